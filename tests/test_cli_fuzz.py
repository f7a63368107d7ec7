"""Bad input at every command's door: each row is a command line that must be refused before any work starts.

A refusal is: a non-zero exit, one line on stderr that starts with "error: " and names the bad flag, key or file
(the row's expected substring), no traceback, and nothing written in the row's output directory. Commands run
in-process through foresight.cli.main, so a row costs milliseconds.

To add a case, add a row to CASES (argv with {placeholders}, the expected substring); a new numeric config key is
covered by itself once it has a range in foresight.config.RANGES (test_config.py checks that every one has), and
its bad values come from BAD_VALUES. A row that fails because of a bug in a file this suite does not own is marked
xfail with the reason.

Placeholders: {out} the output directory that must stay empty; {run} a valid run config whose data does not
exist (so nothing can train even if a bad value slips through); {fc} a forecast config whose data is a bare
manifest (so `ladder plan` would really write a plan); {missing} a path that does not exist; {dir} an existing
directory; {bin} a binary file; {empty} an empty file; {file} a text file that is not what the command wants;
{model} a tiny Hugging Face model folder; {csv} a valid points table; {ledger} a file that is not a ledger.
"""

from __future__ import annotations

import dataclasses
import json
import math
import typing
from pathlib import Path

import pytest

from foresight.cli import main
from foresight.config import RANGES, RunConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
BINARY = b"\x00\xff\xfe\x80PK\x03\x04\xc3\x28 not text \xa0\xa1"


@dataclasses.dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    expect: str  # a substring of the one error line: the bad flag, key or file
    out: str = "{out}"  # the directory that must hold nothing afterwards (None: the row writes nowhere)
    xfail: str = ""  # why this row fails today (a bug in a file this suite does not own)
    run: bool = True  # False: an xfail row whose bug starts real work (training, downloads), so it is not run

    def param(self):
        marks = [pytest.mark.xfail(reason=self.xfail, strict=False, run=self.run)] if self.xfail else []
        return pytest.param(self, id=" ".join(self.argv)[:90], marks=marks)


def case(*argv: str, expect: str, out: str | None = "{out}", xfail: str = "", run: bool = True) -> Case:
    return Case(tuple(argv), expect, out, xfail, run)


def config_file_cases(*command: str) -> list[Case]:
    """The rows every command that trains from a TOML config gets: a missing file, a binary one, and a config of
    another command's schema (the pre-training run config)."""
    return [case(*command, "{missing}", "--out", "{out}", expect="{missing}"),
            case(*command, "{bin}", "--out", "{out}", expect="{bin}"),
            case(*command, "{run}", "--out", "{out}", expect="unknown key")]


# ----- the inputs every row can name ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("fuzz")
    run = root / "run.toml"
    text = (CONFIGS / "tiny.toml").read_text().replace('path = ""', f'path = "{root / "no-data"}"', 1)
    assert str(root / "no-data") in text
    run.write_text(text)
    data = root / "fake-data"
    data.mkdir()
    (data / "manifest.json").write_text(json.dumps({"tokenizer": {"vocab_size": 1024}}))
    fc = root / "forecast.toml"
    fc.write_text((CONFIGS / "forecast-cpu.toml").read_text()
                  .replace("[target.data]\n", f'[target.data]\npath = "{data}"\n'))
    (root / "dir").mkdir()
    (root / "bin").write_bytes(BINARY)
    (root / "empty").write_text("")
    (root / "file").write_text("not what you wanted\n")
    (root / "ledger").write_text("this is not a ledger\n{\"half\": \n")
    rows = [(1e9 * 2**i, 5.0 * (1e9 * 2**i) ** -0.1 + 1.5) for i in range(6)]
    (root / "points.csv").write_text("C,L,name\n" + "".join(f"{c},{l},r{i}\n" for i, (c, l) in enumerate(rows)))
    return {"{root}": str(root), "{run}": str(run), "{fc}": str(fc), "{missing}": str(root / "missing"),
            "{dir}": str(root / "dir"), "{bin}": str(root / "bin"), "{empty}": str(root / "empty"),
            "{file}": str(root / "file"), "{ledger}": str(root / "ledger"), "{csv}": str(root / "points.csv")}


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory) -> str:
    """A Hugging Face folder with a 1-layer random Llama and a byte-level BPE of 300 tokens (about a second)."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    from foresight.model.config import ModelConfig
    from foresight.model.transformer import Transformer
    from foresight.weights.export import write_hf_folder
    from foresight.weights.load import HFTokenizer, LoadedModel

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(["a small text to learn a few merges from"] * 20, trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<|endoftext|>", "<|im_end|>"], show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet()))
    tok = HFTokenizer(bpe, {"eos_token": "<|im_end|>"}, None)
    cfg = ModelConfig(vocab_size=tok.vocab_size, d_model=32, n_layers=1, n_heads=2, max_seq_len=64)
    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("model") / "tiny-hf"
    write_hf_folder(LoadedModel(Transformer(cfg).eval(), tok, "tiny", "hf", out), out)
    return str(out)


@pytest.fixture(autouse=True)
def _private_dirs(tmp_path, monkeypatch):
    monkeypatch.setenv("FORESIGHT_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FORESIGHT_DATA", str(tmp_path / "data"))
    monkeypatch.delenv("FORESIGHT_DEBUG", raising=False)


def refused(c: Case, world: dict, tmp_path: Path, capsys, extra: dict | None = None) -> str:
    """Run the row and check that it was refused properly; returns the error line."""
    values = {**world, "{out}": str(tmp_path / "out"), **(extra or {})}

    def fill(text: str) -> str:
        for k, v in values.items():
            text = text.replace(k, v)
        return text

    argv = [fill(a) for a in c.argv]
    capsys.readouterr()
    code = main(argv)
    err = capsys.readouterr().err
    assert code != 0, f"exit 0 for {argv}"
    assert "Traceback" not in err, err
    # Progress bars may come first (data prepare draws one); the error is one line, and the last.
    lines = [line.rsplit("\r", 1)[-1] for line in err.splitlines() if line.strip()]
    errors = [line for line in lines if line.startswith("error: ")]
    assert len(errors) == 1 and lines[-1] == errors[0], f"not one error line: {err!r}"
    assert fill(c.expect) in errors[0], f"{fill(c.expect)!r} not named in: {errors[0]}"
    if c.out:
        out = Path(fill(c.out))
        assert not out.exists() or (out.is_dir() and not any(out.iterdir())), f"{out} was written"
    return errors[0]


# ----- config keys: every numeric key with out-of-range, wrong-type, empty, huge and binary values ---------------


def numeric_keys(schema: type, prefix: str = "") -> list[tuple[str, type, object]]:
    """(dotted key, int or float, its Range) for every numeric field under `schema`."""
    keys = []
    hints = typing.get_type_hints(schema)
    for f in dataclasses.fields(schema):
        tp = hints[f.name]
        if dataclasses.is_dataclass(tp):
            keys += numeric_keys(tp, f"{prefix}{f.name}.")
        elif tp in (int, float):
            keys.append((prefix + f.name, tp, RANGES[schema.__name__][f.name]))
    return keys


def _toml(x: float | int) -> str:
    return repr(x) if isinstance(x, int) or math.isfinite(x) else ("inf" if x > 0 else "-inf")


def bad_values(tp: type, rng) -> list[tuple[str, str]]:
    """(label, the raw text after `--set key=`) of values that must be refused."""
    below = rng.lo if rng.lo_open else rng.lo - 1
    above = rng.hi if rng.hi_open else (rng.hi + 1 if tp is int else rng.hi * 10)
    values = [("below", _toml(tp(below))), ("above", _toml(tp(above))), ("string", '"abc"'), ("word", "lots"),
              ("bool", "true"), ("empty", ""), ("array", "[1, 2]"), ("table", "{a = 1}"), ("binary", "\x00\xff\xfe"),
              ("huge", "9" * 400), ("longer than int parsing allows", "9" * 5000)]
    if tp is float:
        values += [("nan", "nan"), ("inf", "inf"), ("-inf", "-inf")]
    else:
        values += [("fraction", "1.5"), ("float", "1e3")]
    return values


RUN_KEYS = numeric_keys(RunConfig)


def _forecast_keys():
    from foresight.scaling.ladder import CapabilitiesConfig, FitConfig, LadderConfig

    return (numeric_keys(LadderConfig, "ladder.") + numeric_keys(FitConfig, "fit.")
            + numeric_keys(CapabilitiesConfig, "forecast.capabilities.")
            # the target is a RunConfig: a few of its keys show the prefix is named
            + [(f"target.{k}", tp, r) for k, tp, r in RUN_KEYS if k in ("train.tokens", "data.val_tokens",
                                                                          "model.d_model", "train.lr")])


CONFIG_CASES = [
    case("train", "{run}", "--out", "{out}", "--set", f"{key}={raw}", expect=key).param()
    for key, tp, rng in RUN_KEYS for label, raw in bad_values(tp, rng)
] + [
    case("ladder", "plan", "{fc}", "--out", "{out}", "--set", f"{key}={raw}", expect=key).param()
    for key, tp, rng in _forecast_keys() for label, raw in bad_values(tp, rng)
]


@pytest.mark.parametrize("c", CONFIG_CASES)
def test_bad_config_values_are_refused_by_name(c, world, tmp_path, capsys):
    refused(c, world, tmp_path, capsys)


@pytest.mark.parametrize("key, tp, rng", RUN_KEYS, ids=[k for k, _, _ in RUN_KEYS])
def test_bad_values_in_the_config_file_are_refused_by_name(key, tp, rng, world, tmp_path, capsys):
    """The same checks on load as for --set: the value written in the TOML file itself."""
    import tomllib

    import tomli_w

    section, name = key.split(".")
    below = rng.lo if rng.lo_open else rng.lo - 1
    above = rng.hi if rng.hi_open else (rng.hi + 1 if tp is int else rng.hi * 10)
    values = [tp(below), tp(above), "abc", True, [1], {"a": 1}] + ([math.nan, -math.inf] if tp is float else [1.5])
    for i, value in enumerate(values):
        table = tomllib.loads(Path(world["{run}"]).read_text())
        table[section][name] = value
        path = tmp_path / f"bad{i}.toml"
        path.write_text(tomli_w.dumps(table))
        refused(case("train", str(path), "--out", "{out}", expect=key), world, tmp_path, capsys)


# ----- flags and files of every subcommand ---------------------------------------------------------------------------

NOT_OURS = "bug outside this suite's files: "
CASES = [
    # argparse itself: one line, naming the flag
    case("nosuchcommand", expect="invalid choice: 'nosuchcommand'", out=None),
    case("train", expect="required: config, --out", out=None),
    case("train", "{run}", "--out", "{out}", "--no-such-flag", expect="unrecognized arguments: --no-such-flag"),
    # train: the config file
    case("train", "{missing}", "--out", "{out}", expect="{missing}"),
    case("train", "{dir}", "--out", "{out}", expect="{dir}: is a directory"),
    case("train", "{bin}", "--out", "{out}", expect="{bin}: not a TOML file"),
    case("train", "{empty}", "--out", "{out}", expect="set exactly one of train.tokens"),
    case("train", "{file}", "--out", "{out}", expect="{file}: not valid TOML"),
    case("train", "\x00\xff", "--out", "{out}", expect="config file not found"),
    # train: --out
    case("train", "{run}", "--out", "{file}", expect="--out {file} is a file", out=None),
    case("train", "{run}", "--out", "{file}/sub", expect="which is a file", out=None),
    case("train", "{run}", "--out", "", expect="--out is empty", out=None),
    # train: --set
    case("train", "{run}", "--out", "{out}", "--set", "train.lr", expect="--set expects key=value"),
    case("train", "{run}", "--out", "{out}", "--set", "nosuch.key=1", expect="unknown key 'nosuch.key'"),
    case("train", "{run}", "--out", "{out}", "--set", "train.lrr=1", expect="did you mean 'train.lr'"),
    case("train", "{run}", "--out", "{out}", "--set", "train=5", expect="train must be a table"),
    case("train", "{run}", "--out", "{out}", "--set", "=1", expect="unknown key"),
    case("train", "{run}", "--out", "{out}", "--set", "\x00\xff=1", expect="unknown key"),
    case("train", "{run}", "--out", "{out}", "--set", "train.schedule=linear", expect="train.schedule must be"),
    case("train", "{run}", "--out", "{out}", "--set", "train.device=tpu", expect="train.device must be"),
    case("train", "{run}", "--out", "{out}", "--set", "train.flops=1e12", expect="set exactly one of"),
    case("train", "{run}", "--out", "{out}", "--set", "train.seq_len=256", expect="exceeds model.max_seq_len"),
    case("train", "{run}", "--out", "{out}", "--set", "data.val_tokens=64",
         expect="data.val_tokens (64) must hold at least one sequence"),
    case("train", "{run}", "--out", "{out}", "--set", "model.n_heads=3", expect="n_heads"),
    case("train", "{run}", "--out", "{out}", "--set", "train.micro_batch_size=17",
         expect="train.micro_batch_size (17) exceeds train.batch_size"),
    # ladder plan / forecast
    case("ladder", "plan", "{missing}", "--out", "{out}", expect="{missing}"),
    case("ladder", "plan", "{bin}", "--out", "{out}", expect="{bin}"),
    case("ladder", "plan", "{dir}", "--out", "{out}", expect="{dir}"),
    case("ladder", "plan", "{fc}", "--out", "{out}", "--set", "ladder.runs=3", expect="ladder.runs must be at least 5"),
    case("ladder", "plan", "{fc}", "--out", "{file}", expect="{file}", out=None),
    case("ladder", "run", "{missing}", expect="{missing}", out=None),
    case("ladder", "run", "{file}", expect="{file}", out=None),
    case("ladder", "run", "{dir}", "--jobs", "-1", expect="--jobs", out=None),
    case("ladder", "run", "{dir}", "--procs-per-run", "0", expect="--procs-per-run", out=None),
    case("forecast", "{fc}", "--out", "{out}", "--jobs", "-1", expect="--jobs"),
    case("forecast", "{fc}", "--out", "{out}", "--procs-per-run", "0", expect="--procs-per-run"),
    case("forecast", "{fc}", "--out", "{out}", "--set", "ladder.span=-1", expect="ladder.span"),
    case("forecast", "{bin}", "--out", "{out}", expect="{bin}"),
    case("forecast", "{fc}", "--out", "{file}", expect="{file}", out=None),
    # fit / predict
    case("fit", "{missing}", expect="{missing}", out=None),
    case("fit", "{bin}", expect="{bin}", out=None),
    case("fit", "{dir}", expect="{dir}", out=None),
    case("fit", "{empty}", expect="{empty}", out=None),
    case("fit", "{csv}", "--x", "nosuch", "--y", "L", expect="nosuch", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "name", expect="name", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--level", "2", expect="--level", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--level", "nan", expect="--level", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--bootstrap", "-5", expect="--bootstrap", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--top-runs", "-1", expect="top_runs must be", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--predict", "abc", expect="abc", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--predict=-1e30", expect="-1e30", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--where", "garbage", expect="garbage", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--where", "nosuch=1", expect="nosuch", out=None),
    case("fit", "{csv}", "--x", "C", "--y", "L", "--plot", "{dir}", expect="{dir}", out=None),
    case("predict", "{csv}", "--x", "C", "--y", "L", "--predict", "1e12", "--register", "--ledger", "{dir}",
         expect="{dir}", out=None),
    case("predict", "{csv}", "--x", "C", "--y", "L", "--predict", "1e12", "--register", "--ledger", "{out}/l.jsonl",
         "--target", "{missing}", expect="{missing}"),
    # ledger
    case("ledger", "verify", "{missing}", expect="{missing}", out=None),
    case("ledger", "verify", "{bin}", expect="{bin}", out=None),
    case("ledger", "verify", "{dir}", expect="{dir}", out=None),
    case("ledger", "verify", "{ledger}", expect="{ledger}", out=None),
    case("ledger", "verify", "{empty}", expect="{empty}", out=None),
    case("ledger", "show", "{bin}", expect="{bin}", out=None),
    case("ledger", "show", "{dir}", expect="{dir}", out=None),
    # vlm: configs, runs and flags; images given to sample
    *config_file_cases("align", "dpo"),
    case("align", "dpo", str(CONFIGS / "align-dpo-smollm2.toml"), "--out", "{out}", "--set", "dpo.beta=0",
         expect="beta"),
    case("align", "dpo", str(CONFIGS / "align-dpo-smollm2.toml"), "--out", "{out}", "--set", "dpo.loss=hinge",
         expect="loss"),
    *config_file_cases("align", "ppo"),
    case("align", "ppo", str(CONFIGS / "align-ppo-smollm2.toml"), "--out", "{out}", "--set", "ppo.kl_estimator=k2",
         expect="kl_estimator"),
    case("align", "ppo", str(CONFIGS / "align-ppo-smollm2.toml"), "--out", "{out}", "--set", "ppo.rollouts=10",
         expect="minibatch"),
    case("align", "ppo", str(CONFIGS / "align-ppo-smollm2.toml"), "--out", "{out}", "--set",
         "train.checkpoint_every=3", expect="checkpoint_every"),
    case("align", "ppo", str(CONFIGS / "align-ppo-smollm2.toml"), "--out", "{out}", "--set", "ppo.rubric=",
         expect="grader_head needs a rubric"),
    *config_file_cases("vlm", "train"),
    case("vlm", "eval", "{missing}", expect="{missing}", out=None),
    case("vlm", "eval", "{dir}", "--scenes", "0", expect="--scenes", out=None),
    case("vlm", "eval", "{dir}", "--sets", "bogus", expect="'bogus'", out=None),
    case("vlm", "eval", "{dir}", "--set-images", "-3", expect="--set-images", out=None),
    case("sample", "{model}", "--image", "{missing}", "--prompt", "hi", expect="{missing}", out=None),
    case("sample", "{model}", "--image", "{bin}", "--prompt", "hi", expect="{bin}", out=None),
    case("sample", "{model}", "--image", "{empty}", "--prompt", "hi", expect="{empty}", out=None),
    case("sample", "{model}", "--image", "{dir}", "--prompt", "hi", expect="{dir}", out=None),
    # sample / chat / export: MODEL and flags
    case("sample", "{missing}", "--prompt", "hi", expect="{missing}", out=None),
    case("sample", "{bin}", "--prompt", "hi", expect="{bin}", out=None),
    case("sample", "{model}", "--prompt", "hi", "--max-tokens", "-1", expect="--max-tokens", out=None),
    case("sample", "{model}", "--prompt", "hi", "--temperature", "-1", expect="temperature must be", out=None),
    case("sample", "{model}", "--prompt", "hi", "--temperature", "nan", expect="temperature must be", out=None),
    case("sample", "{model}", "--prompt", "hi", "--top-p", "2", expect="top_p must be", out=None),
    case("sample", "{model}", "--prompt", "hi", "--top-k", "-1", expect="top_k must be", out=None),
    case("chat", "{missing}", expect="{missing}", out=None),
    case("chat", expect="MODEL", out=None),
    case("chat", "{model}", "--api-key", "k", expect="--api-key", out=None),
    case("serve", "{missing}", expect="{missing}", out=None),
    case("serve", "{bin}", expect="{bin}", out=None),
    case("serve", "{model}", "--port", "0", expect="--port", out=None),
    case("serve", "{model}", "--port", "70000", expect="--port", out=None),
    case("serve", "{model}", "--max-batch", "0", expect="--max-batch", out=None),
    case("serve", "{model}", "--max-queue", "-1", expect="--max-queue", out=None),
    case("serve", "{model}", "--drain-timeout", "nan", expect="--drain-timeout", out=None),
    case("export", "{missing}", "--out", "{out}", expect="{missing}"),
    case("export", "{model}", "--out", "{file}", expect="{file}", out=None),
    case("export", "{model}", "--out", "{model}", expect="{model}", out=None),
    # data prepare
    case("data", "prepare", "--corpus", "nosuch", "--root", "{out}", expect="nosuch"),
    case("data", "prepare", "--tokenizer", "bpe:-5", "--root", "{out}", expect="bpe:-5"),
    case("data", "prepare", "--tokenizer", "nosuch", "--root", "{out}", expect="nosuch"),
    case("data", "prepare", "--max-bytes", "-1", "--root", "{out}", expect="--max-bytes"),
    case("data", "prepare", "--val-fraction", "2", "--root", "{out}", expect="--val-fraction"),
    case("data", "prepare", "--seed", "-1", "--root", "{out}", expect="--seed"),
    case("data", "prepare", "--text-files", "{missing}/*.txt", "--root", "{out}", expect="{missing}"),
    case("data", "prepare", "--text-files", "{bin}", "--root", "{out}", expect="{bin}"),
    case("data", "prepare", "--root", "{file}", expect="{file}", out=None),
    # eval
    case("eval", "{model}", "--tasks", "mmlu", "--limit", "0", expect="--limit", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--limit", "abc", expect="--limit", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--shots", "-1", expect="--shots", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--batch-tokens", "0", expect="--batch-tokens", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--threads", "-1", expect="--threads", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--device", "tpu", expect="--device", out=None),
    case("eval", "{model}", "--tasks", "mmlu", "--dtype", "int3", expect="--dtype", out=None),
    case("eval", "{model}", "--tasks", "", expect="--tasks", out=None),
    case("eval", "{model}", "--tasks", ",,", expect="--tasks", out=None),
    case("eval", "{model}", "--tasks", "nosuch", expect="unknown task 'nosuch'", out=None),
    case("eval", "{model}", "--tasks", "\x00\xff", expect="unknown task", out=None),
    case("eval", "{missing}", "--tasks", "hindsight_neglect", expect="{missing}", out=None),
    case("eval", "{model}", "--tasks", "hindsight_neglect", "--out", "{dir}", expect="--out {dir} is a directory",
         out="{dir}"),
    case("eval", "{model}", "--tasks", "hindsight_neglect", "--out", "{file}/r.json", expect="which is a file",
         out=None),
    case("eval", "{model}", "--tasks", "bits_per_byte", "--text", "{missing}", expect="{missing}", out=None),
    case("eval", "{model}", "--tasks", "bits_per_byte", "--text", "{bin}", expect="{bin}", out=None),
    case("eval", "{model}", "--tasks", "bits_per_byte", "--text", "{dir}", expect="{dir}", out=None),
    case("eval", "{model}", "--tasks", "bits_per_byte", "--text", "", expect="--text", out=None),
    case("eval", "--compare", "{missing}", "{file}", expect="{missing}", out=None),
    case("eval", "--compare", "{bin}", "{file}", expect="{bin}", out=None),
    case("eval", "--compare", "{dir}", "{file}", expect="{dir}", out=None),
    case("eval", "--compare", "{file}", "{file}", expect="{file}", out=None),
    case("eval", expect="MODEL", out=None),
]


@pytest.mark.parametrize("c", [c.param() for c in CASES])
def test_bad_flags_and_files_are_refused(c, world, tiny_model, tmp_path, capsys):
    refused(c, world, tmp_path, capsys, {"{model}": tiny_model})


# ----- the CLI's one error path ---------------------------------------------------------------------------------------


def test_a_command_module_that_fails_to_import_is_reported(tmp_path, monkeypatch, capsys):
    """A broken install (a module missing, or one that raises on import) is named with its exception when its
    command is used, and listed as unavailable in --help; the other commands still work."""
    import sys

    from foresight import cli

    (tmp_path / "fs_broken_cmds.py").write_text("raise RuntimeError('half-installed')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setattr(cli, "COMMAND_MODULES", {"foresight.train.commands": ("train",),
                                                 "fs_no_such_module": ("ghost",),
                                                 "fs_broken_cmds": ("broken", "other")})
    assert main(["ghost", "--list", "x"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "fs_no_such_module" in err and "ModuleNotFoundError" in err
    assert main(["other"]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: `foresight other` is unavailable: importing fs_broken_cmds failed with "
                          "RuntimeError: half-installed")
    assert main(["--help"]) == 0
    assert "(unavailable: fs_no_such_module failed to import" in capsys.readouterr().out
    assert main(["train", str(tmp_path / "missing.toml"), "--out", str(tmp_path / "o")]) == 2  # still there
    assert "config file not found" in capsys.readouterr().err
    sys.modules.pop("fs_broken_cmds", None)


def _failing_list(exc: BaseException):
    def run():
        raise exc
    return run


@pytest.mark.parametrize("exc, expect, code", [
    (ZeroDivisionError("division by zero"),
     "error: `foresight eval` failed unexpectedly (ZeroDivisionError: division by zero). This is a bug in "
     "Foresight: please report it to", 1),
    (KeyError("tasks\nsecond line"), "error: `foresight eval` failed unexpectedly (KeyError:", 1),
    (MemoryError(), "error: `foresight eval` ran out of memory", 2),
])
def test_an_unexpected_exception_is_one_line_naming_the_command(exc, expect, code, monkeypatch, capsys):
    from foresight.evals import commands

    monkeypatch.setattr(commands, "_list", _failing_list(exc))
    assert main(["eval", "--list"]) == code
    err = capsys.readouterr().err
    assert err.startswith(expect) and err.count("\n") == 1 and "Traceback" not in err
    if code == 1:
        assert "FORESIGHT_DEBUG=1" in err
    monkeypatch.setenv("FORESIGHT_DEBUG", "1")  # the traceback, for a bug report
    with pytest.raises(type(exc)):
        main(["eval", "--list"])


def test_scripts_take_the_cli_error_path(tmp_path, monkeypatch, capsys):
    """scripts/*.py run their main through `run_script`: the same one line as a command, the same exit codes."""
    from foresight.cli import run_script
    from foresight.errors import ForesightError

    def bad_input():
        raise ForesightError("rubric file not found: r.yaml")

    assert run_script(bad_input, "scripts/x.py") == 2
    assert capsys.readouterr().err == "error: rubric file not found: r.yaml\n"
    assert run_script(lambda: open(tmp_path / "missing"), "scripts/x.py") == 2
    assert capsys.readouterr().err.startswith(f"error: {tmp_path / 'missing'}: No such file or directory")
    assert run_script(lambda: 1 / 0, "scripts/x.py") == 1
    assert capsys.readouterr().err.startswith("error: `scripts/x.py` failed unexpectedly (ZeroDivisionError")
    assert run_script(lambda: None, "scripts/x.py") == 0 and run_script(lambda: 3, "scripts/x.py") == 3
    monkeypatch.setenv("FORESIGHT_DEBUG", "1")
    with pytest.raises(ZeroDivisionError):
        run_script(lambda: 1 / 0, "scripts/x.py")


def test_os_errors_become_one_line_naming_the_file(tmp_path, monkeypatch, capsys):
    """Missing, a directory, unreadable, binary: whatever a command opens itself is named."""
    import json as json_module
    import os

    from foresight.evals import commands

    (tmp_path / "d").mkdir()
    (tmp_path / "bin.json").write_bytes(BINARY)
    locked = tmp_path / "locked"
    locked.write_text("x")
    locked.chmod(0)
    readers = {
        "missing": (lambda: open(tmp_path / "missing"), f"error: {tmp_path / 'missing'}: No such file or directory"),
        "directory": (lambda: (tmp_path / "d").read_text(), f"error: {tmp_path / 'd'}: Is a directory"),
        "binary": (lambda: (tmp_path / "bin.json").read_text(), f"error: {tmp_path / 'bin.json'}: not a text file"),
        "binary, open": (lambda: json_module.load(open(tmp_path / "bin.json")),
                         f"error: {tmp_path / 'bin.json'}: not a text file"),
    }
    if os.geteuid() != 0:  # root reads whatever it likes
        readers["unreadable"] = (lambda: locked.read_text(), f"error: {locked}: Permission denied")
    for name, (read, expect) in readers.items():
        monkeypatch.setattr(commands, "_list", read)
        assert main(["eval", "--list"]) == 2, name
        err = capsys.readouterr().err
        assert err.startswith(expect) and err.count("\n") == 1, (name, err)


def test_usage_errors_are_one_line_and_help_still_exits_zero(capsys):
    assert main(["eval", "--limit"]) == 2
    assert capsys.readouterr().err == ("error: foresight eval: argument --limit: expected one argument "
                                       "(see `foresight eval --help`)\n")
    assert main(["train", "--help"]) == 0
    assert "usage: foresight train" in capsys.readouterr().out
