"""SFT step throughput: foresight's `train_sft` against TRL's `SFTTrainer`, same model, data, seq_len and batch.

Both start from the same float32 weights (SmolLM2-135M-Instruct by default: our loader's weights, and the Hugging
Face folder written from them by `foresight.weights.export.write_hf_folder`), train on the same N conversations from
`foresight align data`'s sft_train.jsonl (a seeded sample of those with one assistant reply, last, that fit in
seq_len + 1 tokens), with the same AdamW (lr, betas, eps, weight decay), gradient clipping, a constant learning rate
without warm-up, no dropout, fp32 on the CPU, one process, the same number of threads. Ours runs exactly as
`foresight align sft` does (`train_sft`, the shared loop, metrics every step); TRL runs as its documentation shows,
with `bf16=False` and `gradient_checkpointing=False` (TRL turns both on by default; neither is wanted here).

The same tokens are trained on both sides. TRL gets each conversation in its prompt-completion text form: prompt =
the chat template's rendering of the messages before the reply with the generation prompt, completion = the reply
and its end-of-turn token (TRL's `completion_only_loss`, on by default for that form). Its tokenization is checked
to give exactly our ids and our assistant mask (`foresight.align.tokens`: the reply and <|im_end|>, not the newline
the template writes after it; TRL's conversational form would also train that newline). Every row TRL prepares is
compared, and the script stops on any difference.

1. Loss check and matched throughput ("one conversation per row"): ours with `sft.pack = false`; TRL without
   packing (its default for this data: one conversation per row, padded to the batch's longest). TRL samples
   sequentially from the conversations laid out in the order our `pack`/`step_order` give them, so step s of both
   trains the same B conversations. Both runs take K steps; their losses (mean cross-entropy over the batch's
   assistant tokens) are printed side by side with their largest difference; goal <= 1e-3. Ours pads every row to
   seq_len here, TRL to the batch's longest conversation.
2. Natural throughput: each side's fast configuration on the same conversations. Ours: packing (first fit, a
   block-diagonal mask per conversation, rows of seq_len). TRL: `packing=True` with its default best-fit-decreasing
   strategy, which is padding-free (the batch is one flat sequence with restarting position ids; transformers
   builds a block-diagonal SDPA mask from them). The script checks that no packed conversation sees another: the
   per-token log-probabilities of three conversations packed together equal those of each alone. Both runs take S
   steps of B rows of up to seq_len tokens. On a CPU, TRL's flat row of B x seq_len tokens costs SDPA a dense
   (B x seq_len)^2 masked attention, so TRL is faster here without packing; the ratio takes TRL's faster one.

Throughput, for each run: every step but the first is timed (step 1 is the warm-up), from the end of one optimizer
step to the end of the next on TRL's side (a callback; this covers its data loading too), and the loop's own step
time on ours (batch assembly, forward, backward, clipping, AdamW; read from metrics.jsonl). Counted from the batches
each side actually trained on:
  conversation tokens = the tokens of the conversations in the step that the model reads as inputs: each
                        conversation's rendering up to and including its final <|im_end|> (padding not counted);
  assistant tokens    = the targets with a loss (the reply and its <|im_end|>).
Both counts of a conversation are the same on both sides.

    flock /tmp/foresight-bench.lock .venv/bin/python bench/sft_step.py [--conversations 256] [--seq 512] [--batch 8]
        [--check-steps 5] [--steps 4] [--lr 2e-5] [--threads 2] [--skip-matched] [--skip-natural]

Needs the `compare` extra (trl) and the data built by `foresight align data`. Last line: `ratio: X` = our
conversation tokens per second, packed, / TRL's in the faster of its two configurations (packed or one per row), each
rate = conversation tokens of the timed steps / their seconds. With --skip-natural: the one-per-row ratio.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import numpy as np  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_ratio  # noqa: E402


# ----- shared with bench/reward_model.py -----------------------------------------------------------------------------


def quiet_hf() -> None:
    """Keep transformers', datasets' and TRL's progress bars and advice out of the benchmark's output."""
    import datasets
    import transformers

    datasets.disable_progress_bars()
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    import warnings

    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", category=UserWarning)


def export_hf(loaded, work: Path) -> Path:
    """The Hugging Face folder (weights, tokenizer, chat template) of our loaded model: TRL's starting point."""
    from foresight.weights.export import write_hf_folder

    return write_hf_folder(loaded, work / "hf")


@dataclass
class StepLog:
    """What a TRL run did, step by step: the time each optimizer step ended, its loss, and its token counts."""
    ends: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    tokens: list[int] = field(default_factory=list)
    trained: list[int] = field(default_factory=list)
    computed: list[int] = field(default_factory=list)


def step_clock(log: StepLog):
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            log.ends.append(time.perf_counter())

    return Clock()


def logged(trainer_class, log: StepLog):
    """A subclass of a TRL trainer that records, per training step, the tokens it reads (attention mask), the
    positions it computes, the trained targets (where the batch has labels), and its loss."""

    class Logged(trainer_class):
        def training_step(self, model, inputs, num_items_in_batch=None):
            log.computed.append(int(inputs["input_ids"].numel()))
            if "labels" in inputs:
                log.trained.append(int((inputs["labels"][:, 1:] != -100).sum()))
            if "attention_mask" in inputs:
                log.tokens.append(int(inputs["attention_mask"].sum()))
            else:  # padding-free: one flat row, nothing padded
                log.tokens.append(int(inputs["input_ids"].numel()))
            return super().training_step(model, inputs, num_items_in_batch)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            result = super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            if model.training:
                log.losses.append(float((result[0] if return_outputs else result).detach()))
            return result

    return Logged


def drop_printer(trainer) -> None:
    """No per-run metrics dict on stdout (disable_tqdm swaps the progress bar for a printer)."""
    from transformers.trainer_callback import PrinterCallback

    trainer.remove_callback(PrinterCallback)


def timed_rate(amounts: list[int], seconds: list[float]) -> float:
    return sum(amounts) / sum(seconds)


def trl_common_args(args, out: Path, steps: int) -> dict:
    """TrainingArguments shared by TRL's SFT and reward trainers here: ours' optimizer settings, fp32, CPU."""
    return dict(
        output_dir=str(out), max_steps=steps, per_device_train_batch_size=args.batch, gradient_accumulation_steps=1,
        learning_rate=args.lr, adam_beta1=args.beta1, adam_beta2=args.beta2, adam_epsilon=args.eps,
        weight_decay=args.weight_decay, max_grad_norm=args.grad_clip, lr_scheduler_type="constant", warmup_steps=0,
        bf16=False, fp16=False, gradient_checkpointing=False, use_cpu=True, seed=args.seed, data_seed=args.seed,
        train_sampling_strategy="sequential", dataloader_num_workers=0, logging_steps=10**6, save_strategy="no",
        report_to="none", disable_tqdm=True, remove_unused_columns=True,
    )


def our_train_config(args, steps_hint: int = 0):
    """The [train] table of our run: the same optimizer settings, constant rate, no warm-up, fp32 CPU, a metrics
    row every step, no evaluation and no checkpoint before the last step."""
    from foresight.config import TrainConfig

    return TrainConfig(seq_len=args.seq, batch_size=args.batch, lr=args.lr, schedule="constant", warmup_steps=0,
                       warmup_fraction=0.0, weight_decay=args.weight_decay, beta1=args.beta1, beta2=args.beta2,
                       eps=args.eps, grad_clip=args.grad_clip, eval_every=0, log_every=1, checkpoint_every=0,
                       keep_checkpoints=1, seed=args.seed, device="cpu", dtype="float32", threads=args.threads)


def loop_step_seconds(run: Path) -> tuple[list[float], list[float]]:
    """(training loss, seconds) of every step of one of our runs, from its metrics.jsonl (written every step): the
    loop's cumulative tokens_per_second at step k is k * tokens_per_step / (seconds of steps 1..k)."""
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines() if line.strip()]
    rows = [r for r in rows if "train_loss" in r]
    cumulative = [r["tokens"] / r["tokens_per_second"] for r in rows]
    seconds = [b - a for a, b in zip([0.0] + cumulative[:-1], cumulative)]
    return [r["train_loss"] for r in rows], seconds


def add_optimizer_args(parser: argparse.ArgumentParser, lr: float) -> None:
    parser.add_argument("--lr", type=float, default=lr)
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--beta2", type=float, default=0.999)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=1.0)


def check_optimizer_groups(model) -> None:
    """Our imported models are in standard parametrization: every group learns at the base rate, like TRL's."""
    mults = {g["lr_mult"] for g in model.param_groups(0.0)}
    if mults != {1.0}:
        raise SystemExit(f"the model's parameter groups have learning-rate multipliers {mults}; TRL has none")


def free() -> None:
    gc.collect()


# ----- SFT -----------------------------------------------------------------------------------------------------------


def select(args, loaded) -> tuple[list[dict], list]:
    """A seeded sample of N conversations (one assistant reply, last, fitting in seq_len + 1 tokens) and our
    tokenization of each."""
    from foresight.align import run as align_run
    from foresight.align.data import align_data_dir, read_conversations
    from foresight.align.sft import tokenize

    path = Path(args.data) if args.data else align_data_dir() / "sft_train.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: build the data with `foresight align data` (or pass --data FILE)")
    candidates = [r for r in read_conversations(path)
                  if [m["role"] for m in r["messages"]].count("assistant") == 1
                  and r["messages"][-1]["role"] == "assistant"]
    records, examples = [], []
    for r in align_run.sample(candidates, 4 * args.conversations, args.seed):
        ex, _ = tokenize(loaded.tokenizer, [r], args.seq + 1, str(path))
        if ex:
            records.append(r)
            examples.append(ex[0])
        if len(records) == args.conversations:
            break
    if len(records) < args.conversations:
        raise SystemExit(f"only {len(records)} conversations fit in {args.seq + 1} tokens")
    return records, examples


def trl_text(hf_tok, record: dict) -> dict:
    """TRL's prompt-completion text form of a conversation whose last message is the assistant's reply."""
    messages = record["messages"]
    prompt = hf_tok.apply_chat_template(messages[:-1], tokenize=False, add_generation_prompt=True)
    whole = hf_tok.apply_chat_template(messages, tokenize=False)
    if not whole.startswith(prompt):
        raise SystemExit(f"{record['id']}: the template does not render the prompt as a prefix of the conversation")
    rest = whole[len(prompt):]
    end = hf_tok.eos_token
    return {"prompt": prompt, "completion": rest[:rest.rindex(end) + len(end)]}


def ours_as_trl(example) -> tuple[list[int], list[int]]:
    """Our tokenization in TRL's terms: input ids up to the last trained token, labels = ids where trained."""
    last = max(j for j, t in enumerate(example.trained) if t)
    ids = example.ids[:last + 1]
    return ids, [t if keep else -100 for t, keep in zip(ids, example.trained[:last + 1])]


def our_order(examples: list, args, packed: bool, steps: int) -> list:
    """The rows our run trains on, step by step (pack and step_order, as train_sft calls them)."""
    from foresight.align.run import step_order
    from foresight.align.sft import pack, stack

    rows = pack(examples, args.seq, args.seed, packed)
    return [stack([rows[i] for i in step_order(len(rows), args.seed, s, args.batch, 0, args.batch)])
            for s in range(steps)], rows


def conversation_order(n: int, args) -> list[int]:
    """Which conversation each unpacked row of our run holds, in the order the steps take them (epoch 0)."""
    order = np.random.default_rng(args.seed).permutation(n)  # pack(..., packed=False)
    perm = np.random.default_rng([args.seed, 0]).permutation(n)  # step_order, epoch 0
    return [int(order[p]) for p in perm]


def run_ours(args, records: list[dict], examples: list, work: Path, packed: bool, steps: int) -> dict:
    from foresight.align.config import AlignDataConfig, SFTConfig, SFTOptions
    from foresight.align.sft import IGNORE, train_sft

    data = work / "ours.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in records))
    out = work / f"ours-{'packed' if packed else 'rows'}"
    cfg = SFTConfig(base=args.base, data=AlignDataConfig(train=str(data), max_heldout=0),
                    train=our_train_config(args), sft=SFTOptions(steps=steps, pack=packed))
    summary = train_sft(cfg, out, progress=False)
    if summary["conversations"] != len(examples) or summary["left_out_too_long"]:
        raise SystemExit(f"our run tokenized {summary['conversations']} conversations, the bench {len(examples)}")
    losses, seconds = loop_step_seconds(out)
    batches, rows = our_order(examples, args, packed, steps)
    tokens = [int((b.documents >= 0).sum()) for b in batches]
    trained = [int((b.targets != IGNORE).sum()) for b in batches]
    computed = [int(b.tokens.numel()) for b in batches]
    return {"losses": losses, "seconds": seconds, "tokens": tokens, "trained": trained, "computed": computed,
            "rows": len(rows)}


def make_trl_trainer(args, hf_dir: Path, dataset, work: Path, packed: bool, log: StepLog, steps: int):
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import SFTConfig, SFTTrainer

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="sdpa")
    if getattr(model.config, "attention_dropout", 0.0):
        raise SystemExit("the exported model has attention dropout")
    config = SFTConfig(**trl_common_args(args, work / f"trl-{'packed' if packed else 'rows'}", steps),
                       max_length=args.seq, packing=packed, completion_only_loss=True, dataset_num_proc=None)
    trainer = logged(SFTTrainer, log)(model=model, args=config, train_dataset=dataset, processing_class=tok,
                                      callbacks=[step_clock(log)])
    drop_printer(trainer)
    return trainer


def run_trl(args, records: list[dict], examples: list, hf_dir: Path, work: Path, packed: bool,
            steps: int) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer

    hf_tok = AutoTokenizer.from_pretrained(hf_dir)
    order = conversation_order(len(records), args)
    dataset = Dataset.from_list([trl_text(hf_tok, records[i]) for i in order])
    log = StepLog()
    trainer = make_trl_trainer(args, hf_dir, dataset, work, packed, log, steps)
    if not packed:  # TRL's own tokenization must give exactly our ids and assistant mask
        prepared = trainer.train_dataset
        for k, i in enumerate(order):
            ids, labels = ours_as_trl(examples[i])
            if prepared[k]["input_ids"] != ids or prepared[k]["labels"] != labels:
                raise SystemExit(f"{records[i]['id']}: TRL's tokens or loss mask differ from ours")
        print(f"  TRL's tokenization = ours on all {len(order)} conversations (ids and assistant mask)")
    else:
        print(f"  TRL packed {len(records)} conversations into {len(trainer.train_dataset)} rows of <= {args.seq}")
    trainer.train()
    ends = log.ends
    seconds = [b - a for a, b in zip(ends[:-1], ends[1:])]
    result = {"losses": log.losses, "seconds": [float("nan")] + seconds, "tokens": log.tokens,
              "trained": log.trained, "computed": log.computed, "rows": len(trainer.train_dataset)}
    del trainer
    free()
    return result


def check_padding_free(args, hf_dir: Path, examples: list) -> float:
    """Largest |difference| in per-token log-probabilities between three conversations run alone and run packed
    the way TRL's padding-free collator packs them (one flat row, restarting position ids, no attention mask)."""
    from transformers import AutoModelForCausalLM
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="sdpa").eval()
    items = [{"input_ids": ours_as_trl(ex)[0]} for ex in examples[:3]]
    batch = DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)(items)
    with torch.no_grad():
        # use_cache=False as TRL's training forward passes it: with a cache, transformers does not look for packing
        packed = model(input_ids=batch["input_ids"], position_ids=batch["position_ids"],
                       use_cache=False).logits.log_softmax(-1)[0]
        worst, at = 0.0, 0
        for item in items:
            ids = torch.tensor([item["input_ids"]])
            alone = model(input_ids=ids, use_cache=False).logits.log_softmax(-1)[0]
            n = ids.shape[1]
            worst = max(worst, float((packed[at:at + n] - alone).abs().max()))
            at += n
    del model
    free()
    return worst


def report(name: str, res: dict, skip: int = 1) -> dict:
    secs = res["seconds"][skip:]
    tokens, trained = res["tokens"][skip:len(res["seconds"])], res["trained"][skip:len(res["seconds"])]
    rate = timed_rate(tokens, secs)
    rate_trained = timed_rate(trained, secs)
    print(f"  {name:<28} {rate:9.1f} conv tok/s  {rate_trained:8.1f} assistant tok/s   "
          f"{statistics.median(secs):6.2f} s/step (median of {len(secs)}; {min(secs):.2f}-{max(secs):.2f})   "
          f"{statistics.mean(tokens):6.0f} conv tok/step")
    return {"tokens_per_s": rate, "trained_per_s": rate_trained}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--data", default="", help="a conversations JSONL (default: the built sft_train.jsonl)")
    parser.add_argument("--conversations", type=int, default=256)
    parser.add_argument("--seq", type=int, default=512)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--check-steps", type=int, default=5,
                        help="K: steps of the one-per-row runs, whose losses are compared; steps 2..K are timed")
    parser.add_argument("--steps", type=int, default=4, help="S: steps of the packed runs; steps 2..S are timed")
    parser.add_argument("--tolerance", type=float, default=1e-3)
    add_optimizer_args(parser, lr=2e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-matched", action="store_true", help="no loss check, no one-per-row runs")
    parser.add_argument("--skip-natural", action="store_true", help="no packed runs")
    parser.add_argument("--work", default="", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    matched_steps = max(2, args.check_steps)
    if args.steps < 2:
        raise SystemExit("--steps must be at least 2 (step 1 is the warm-up)")
    if matched_steps * args.batch > args.conversations:
        raise SystemExit(f"{matched_steps} steps of {args.batch} need --conversations >= "
                         f"{matched_steps * args.batch} (one epoch)")
    torch.set_num_threads(args.threads)
    from foresight.runtime import keep_freed_memory

    keep_freed_memory()  # what the CLI does at start; process-wide, so both sides get it
    quiet_hf()
    import transformers
    import trl

    from foresight.weights.load import load_model

    with tempfile.TemporaryDirectory(prefix="bench-sft-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        loaded = load_model(args.base)
        check_optimizer_groups(loaded.model)
        records, examples = select(args, loaded)
        hf_dir = export_hf(loaded, work)
        del loaded
        free()
        lengths = [len(ex.ids) - 1 for ex in examples]
        print(f"{args.base}, float32 on CPU, {torch.get_num_threads()} threads; trl {trl.__version__}, transformers "
              f"{transformers.__version__}, torch {torch.__version__}")
        print(f"{len(examples)} conversations (mean {np.mean(lengths):.0f} tokens, max {max(lengths)}; "
              f"{np.mean([sum(ex.trained) for ex in examples]):.0f} assistant tokens), seq_len {args.seq}, batch "
              f"{args.batch}, {matched_steps} steps per one-per-row run, {args.steps} per packed run; AdamW lr "
              f"{args.lr}, betas ({args.beta1}, "
              f"{args.beta2}), eps {args.eps}, weight decay {args.weight_decay}, clip {args.grad_clip}, constant; "
              f"setup {time.time() - t0:.0f} s")

        results = {}
        if not args.skip_matched:
            print("\none conversation per row (ours: sft.pack = false; TRL: no packing, padded to the batch's longest)")
            results["ours_rows"] = run_ours(args, records, examples, work, packed=False, steps=matched_steps)
            results["trl_rows"] = run_trl(args, records, examples, hf_dir, work, packed=False, steps=matched_steps)
        if not args.skip_natural:
            worst = check_padding_free(args, hf_dir, examples)
            print(f"\npacked (ours: first fit, block-diagonal mask; TRL: packing=True, bfd, padding-free); TRL "
                  f"packed vs alone: max |log-prob difference| {worst:.2e}")
            if worst > 1e-3:
                raise SystemExit("TRL's padding-free packing lets conversations see each other on this set-up")
            results["trl_packed"] = run_trl(args, records, examples, hf_dir, work, packed=True, steps=args.steps)
            results["ours_packed"] = run_ours(args, records, examples, work, packed=True, steps=args.steps)

    if "ours_rows" in results:
        ours, theirs = results["ours_rows"]["losses"], results["trl_rows"]["losses"]
        k = args.check_steps
        print(f"\nloss, first {k} steps (mean over the batch's assistant tokens), same batches in the same order:")
        print("  step        ours         TRL    |diff|")
        diffs = []
        for s in range(k):
            diffs.append(abs(ours[s] - theirs[s]))
            print(f"  {s + 1:>4}  {ours[s]:10.6f}  {theirs[s]:10.6f}  {diffs[-1]:.2e}")
        verdict = "within" if max(diffs) <= args.tolerance else "NOT within"
        print(f"  max |diff| {max(diffs):.2e} ({verdict} {args.tolerance:g})")

    print("\nthroughput (every step but the first; conversation tokens exclude padding):")
    rates = {}
    for key, name in [("ours_rows", "ours, one per row"), ("trl_rows", "TRL, one per row"),
                      ("ours_packed", "ours, packed"), ("trl_packed", "TRL, packed (padding-free)")]:
        if key in results:
            rates[key] = report(name, results[key])
    for key, name in [("ours_rows", "ours, one per row"), ("trl_rows", "TRL, one per row"),
                      ("ours_packed", "ours, packed"), ("trl_packed", "TRL, packed")]:
        if key in results:
            res = results[key]
            used = slice(1, None)
            print(f"  ({name}: {res['rows']} rows; the timed steps computed "
                  f"{sum(res['computed'][used]):,} positions for {sum(res['tokens'][used]):,} conversation tokens, "
                  f"{100 * sum(res['tokens'][used]) / sum(res['computed'][used]):.0f}% filled)")
    if "ours_rows" in results:
        print(f"  one per row: ours/TRL {rates['ours_rows']['tokens_per_s'] / rates['trl_rows']['tokens_per_s']:.3f}")
    if "ours_packed" in results:
        trl_best = max((k for k in ("trl_rows", "trl_packed") if k in rates), key=lambda k: rates[k]["tokens_per_s"])
        ratio = rates["ours_packed"]["tokens_per_s"] / rates[trl_best]["tokens_per_s"]
        ours_p, trl_p = rates["ours_packed"], rates["trl_packed"]
        print(f"  ours packed / TRL packed: {ours_p['tokens_per_s'] / trl_p['tokens_per_s']:.3f} "
              f"(assistant tokens/s: {ours_p['trained_per_s'] / trl_p['trained_per_s']:.3f})")
        print(f"  ours packed / TRL's faster configuration ({'packed' if trl_best == 'trl_packed' else 'one per row'}):"
              f" {ratio:.3f}")
        print_ratio(ratio)
    elif "ours_rows" in results:
        print_ratio(rates["ours_rows"]["tokens_per_s"] / rates["trl_rows"]["tokens_per_s"])


if __name__ == "__main__":
    main()
