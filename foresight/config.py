"""Typed configs: TOML in, validated against dataclasses, saved next to every run.

A config schema is a dataclass whose fields are scalars, lists or nested dataclasses (TOML tables). Loading checks
every key and type and names the bad one with the closest valid key; `--set a.b=value` overrides use the same checks.
"""

from __future__ import annotations

import dataclasses
import difflib
import hashlib
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, TypeVar

import tomli_w

from foresight.errors import ForesightError
from foresight.model.config import ModelConfig

T = TypeVar("T")


# ----- the training run's schema -----------------------------------------------------------------------------------


@dataclass
class DataConfig:
    # A corpus prepared by `foresight data prepare --corpus CORPUS --tokenizer TOKENIZER`.
    corpus: str = "default"
    tokenizer: str = "bpe:8192"
    # Where prepared corpora live; "" means $FORESIGHT_DATA or ./data.
    root: str = ""
    # An explicit prepared-data directory; when set it overrides corpus/tokenizer/root.
    path: str = ""
    # Validation uses val_tokens tokens in sequences of train.seq_len, spread evenly over the validation split:
    # the same tokens for every run, so runs of different sizes are comparable.
    val_tokens: int = 262_144


@dataclass
class TrainConfig:
    seq_len: int = 256
    # Sequences per optimizer step, summed over processes and gradient-accumulation micro-steps.
    batch_size: int = 32
    # Sequences per forward pass per process; 0 means batch_size / processes (no accumulation).
    micro_batch_size: int = 0
    # Training length: set exactly one of tokens, flops, tokens_per_param (the last counts all parameters,
    # embeddings included, as Chinchilla does).
    tokens: int = 0
    flops: float = 0.0
    tokens_per_param: float = 0.0
    # Peak learning rate (muP: the base-width rate; each parameter group multiplies it by its lr_mult).
    lr: float = 3e-3
    schedule: Literal["cosine", "wsd", "constant"] = "cosine"
    # Warmup: warmup_steps if > 0, else warmup_fraction of all steps.
    warmup_steps: int = 0
    warmup_fraction: float = 0.05
    # Final learning rate as a fraction of the peak (cosine and wsd).
    min_lr_ratio: float = 0.1
    # Warmup-stable-decay: the last decay_fraction of steps decay linearly to min_lr_ratio.
    decay_fraction: float = 0.2
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    # Clip the global gradient norm to this (0 disables).
    grad_clip: float = 1.0
    # Steps between validation passes (and always at the end); 0 means only at the end.
    eval_every: int = 100
    log_every: int = 10
    # Steps between checkpoints (and always at the end); checkpoints older than the newest keep_checkpoints go.
    checkpoint_every: int = 200
    keep_checkpoints: int = 2
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"
    # auto: bf16 autocast on CUDA, fp32 on CPU.
    dtype: Literal["auto", "float32", "bfloat16"] = "auto"
    # How several processes share the work: "ddp" (each holds the whole model) or "fsdp" (FSDP2: parameters,
    # gradients and optimizer state sharded; checkpoints sharded too, resumable on another number of processes).
    parallel: Literal["ddp", "fsdp"] = "ddp"
    # torch.compile (each block under fsdp, the whole model under ddp).
    compile: bool = False
    # Recompute each block's activations in the backward pass: less memory, about a third more compute.
    activation_checkpointing: bool = False
    # Intra-op CPU threads per process; 0 means the cores divided among local processes.
    threads: int = 0


@dataclass
class RunConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def __post_init__(self) -> None:
        t = self.train
        lengths = [name for name in ("tokens", "flops", "tokens_per_param") if getattr(t, name)]
        if len(lengths) != 1:
            raise ValueError("set exactly one of train.tokens, train.flops, train.tokens_per_param"
                             + (f" (got {', '.join('train.' + n for n in lengths)})" if lengths else ""))
        for name in ("seq_len", "batch_size"):
            if getattr(t, name) <= 0:
                raise ValueError(f"train.{name} must be positive")
        if t.seq_len > self.model.max_seq_len:
            raise ValueError(f"train.seq_len ({t.seq_len}) exceeds model.max_seq_len ({self.model.max_seq_len})")
        if t.lr <= 0:
            raise ValueError("train.lr must be positive")
        if self.data.val_tokens < t.seq_len:
            raise ValueError(f"data.val_tokens ({self.data.val_tokens}) must hold at least one sequence of "
                             f"train.seq_len ({t.seq_len}) tokens")
        if t.micro_batch_size > t.batch_size:
            raise ValueError(f"train.micro_batch_size ({t.micro_batch_size}) exceeds train.batch_size "
                             f"({t.batch_size})")


# ----- ranges: every numeric key of every config schema --------------------------------------------------------------


@dataclass(frozen=True)
class Range:
    """The values a numeric key may take: from lo to hi, each end included unless lo_open / hi_open. Upper bounds
    above a key's real limits are sanity bounds: far beyond any run this code can train, but they stop a typo
    (1e300 FLOPs, a width of 10^12) before it allocates or loops. NaN and infinity are never in range."""

    lo: float
    hi: float
    lo_open: bool = False
    hi_open: bool = False
    # Name both ends in the message (a real limit at both, e.g. a fraction), not just the one that was crossed.
    between: bool = False
    note: str = ""  # what special values mean, e.g. "0 = take the tokenizer's"

    def check(self, key: str, value: float) -> None:
        above_lo = self.lo < value if self.lo_open else self.lo <= value
        below_hi = value < self.hi if self.hi_open else value <= self.hi
        if above_lo and below_hi:
            return
        low = ("positive" if self.lo == 0 else f"greater than {_fmt(self.lo)}") if self.lo_open else \
            f"at least {_fmt(self.lo)}"
        high = f"less than {_fmt(self.hi)}" if self.hi_open else f"at most {_fmt(self.hi)}"
        if self.between or value != value:  # NaN: both ends
            want = f"between {_fmt(self.lo)} and {_fmt(self.hi)}" if not (self.lo_open or self.hi_open) else \
                f"{low} and {high}"
        else:
            want = low if not above_lo else high
        raise ValueError(f"{key} must be {want}, not {_show(value)}" + (f" ({self.note})" if self.note else ""))


def _show(value: Any, width: int = 60) -> str:
    """repr(value), cut to `width` characters (a 400-digit number in an error message helps no one)."""
    text = repr(value)
    return text if len(text) <= width else f"{text[:width - 12]}... ({len(text)} chars)"


def _fmt(x: float) -> str:
    """1e+16 for round big numbers, 4194304 and 0.05 as they are."""
    if abs(x) >= 1e6 and float(f"{x:g}") == x:
        return f"{x:g}"
    return str(int(x)) if x == int(x) else repr(x)


def _positive(hi: float, note: str = "") -> Range:
    return Range(0, hi, lo_open=True, note=note)


def _at_least(lo: float, hi: float, note: str = "") -> Range:
    return Range(lo, hi, note=note)


def _fraction(lo_open: bool = False, note: str = "") -> Range:
    return Range(0, 1, lo_open=lo_open, between=True, note=note)


BIG = 2**63 - 1  # the largest seed torch and numpy both take
WIDTH = 65_536  # widths, depths, heads, sequence lengths: far above anything trained here, small enough to refuse typos
# {schema class name: {field: Range}}. Keyed by name so that schemas defined elsewhere (the model, the ladder, the
# eval task specs) are covered without this module importing them; tests/test_config.py checks that every int and
# float field of every config schema has an entry here and that every default is in range.
RANGES: dict[str, dict[str, Range]] = {
    "ModelConfig": {
        "vocab_size": _at_least(0, 2**22, "0 = take the tokenizer's vocabulary size"),
        "d_model": _at_least(1, WIDTH),
        "n_layers": _at_least(1, 1024),
        "n_heads": _at_least(1, WIDTH),
        "n_kv_heads": _at_least(0, WIDTH, "0 = n_heads"),
        "d_ff": _at_least(0, 16 * WIDTH, "0 = 8/3 of d_model"),
        "max_seq_len": _at_least(1, 2**20),
        "rope_theta": _positive(1e12),
        "norm_eps": _positive(1.0),
        "mup_base_width": _at_least(1, WIDTH),
        "mup_base_head_dim": _at_least(1, WIDTH),
        "init_std": _positive(10.0),
        "output_mult": _positive(1e6),
        "embed_mult": _positive(1e6),
    },
    "DataConfig": {
        "val_tokens": _at_least(1, 10**12),
    },
    "TrainConfig": {
        "seq_len": _at_least(1, 2**20),
        "batch_size": _at_least(1, 2**24),
        "micro_batch_size": _at_least(0, 2**24, "0 = batch_size / processes"),
        "tokens": _at_least(0, 10**16, "0 = unset; set exactly one of train.tokens, train.flops, "
                                        "train.tokens_per_param"),
        "flops": _at_least(0, 1e30, "0 = unset; set exactly one of train.tokens, train.flops, "
                                    "train.tokens_per_param"),
        "tokens_per_param": _at_least(0, 1e6, "0 = unset; set exactly one of train.tokens, train.flops, "
                                              "train.tokens_per_param"),
        "lr": _positive(100.0),
        "warmup_steps": _at_least(0, 10**12, "0 = use warmup_fraction"),
        "warmup_fraction": _fraction(),
        "min_lr_ratio": _fraction(),
        "decay_fraction": _fraction(),
        "weight_decay": _at_least(0, 100.0),
        "beta1": Range(0, 1, hi_open=True, between=True),
        "beta2": Range(0, 1, hi_open=True, between=True),
        "eps": _positive(1.0),
        "grad_clip": _at_least(0, 1e12, "0 = no clipping"),
        "eval_every": _at_least(0, 10**12, "0 = only at the end"),
        "log_every": _at_least(1, 10**12),
        "checkpoint_every": _at_least(0, 10**12, "0 = only at the end"),
        "keep_checkpoints": _at_least(1, 10**6),
        "seed": _at_least(0, BIG),
        "threads": _at_least(0, 4096, "0 = the cores divided among local processes"),
    },
    # foresight.scaling.ladder: the forecast's [ladder], [fit] and [forecast.capabilities] tables.
    "LadderConfig": {
        "runs": _at_least(5, 1000),
        "extrapolation": _at_least(10, 1e9),
        "span": _at_least(30, 1e12),
        "tokens_per_param": _positive(1e6),
        "head_dim": _at_least(2, 4096),
        "width_per_layer": _at_least(1, WIDTH),
        "min_layers": _at_least(1, 1024),
        "max_width": _at_least(4, WIDTH),
        "min_steps": _at_least(1, 10**9),
        "min_batch": _at_least(1, 2**24),
        "batch_multiple": _at_least(1, 4096),
        "eval_every": _at_least(0, 10**12, "0 = only at the end"),
    },
    "FitConfig": {
        "top_runs": _at_least(0, 1000, "0 = every run"),
    },
    "CapabilitiesConfig": {
        "problems_per_level": Range(1, 25, between=True),  # foresight.data.exercises.HELD_OUT_PER_LEVEL
        "samples": _at_least(2, 10**6),
        "max_samples": _at_least(0, 10**7, "0 = samples for every model"),
        "temperature": _positive(100.0),
        "top_p": _fraction(lo_open=True),
        "max_new_tokens": _at_least(1, 2**20),
        "timeout_s": _positive(86_400.0),
        "workers": _at_least(0, 4096, "0 = one per core"),
        "seed": _at_least(0, BIG),
    },
    # foresight.align.config: post-training's data and length settings.
    "AlignDataConfig": {
        "max_examples": _at_least(0, 10**9, "0 = every example"),
        "max_per_source": _at_least(0, 10**9, "0 = no cap"),
        "max_heldout": _at_least(0, 10**9, "0 = every held-out example"),
    },
    "SFTOptions": {
        "epochs": _positive(1e6),
        "steps": _at_least(0, 10**12, "0 = from epochs"),
    },
    "RMOptions": {
        "epochs": _positive(1e6),
        "steps": _at_least(0, 10**12, "0 = from epochs"),
        "margin": _at_least(0, 100.0),
    },
    # foresight.evals.spec: a task's few-shot and generation settings.
    "FewShotSpec": {
        "shots": _at_least(0, 1000),
        "max_shots": _at_least(0, 1000),
    },
    "GenerationSpec": {
        "max_new_tokens": _at_least(1, 2**20),
        "temperature": _at_least(0, 100.0, "0 = greedy"),
        "top_p": _fraction(lo_open=True),
        "samples": _at_least(1, 10**6),
        "k": _at_least(1, 10**6),
    },
}


# Numeric keys whose schema checks them itself, more precisely than a range can (test_config.py accepts these).
CHECKED_BY_SCHEMA = {"CapabilitiesConfig": {"levels"}}  # distinct levels out of foresight.data.exercises.LEVELS


def _check_range(schema: type, name: str, value: Any, key: str) -> None:
    rng = RANGES.get(schema.__name__, {}).get(name)
    if rng is None:
        return
    if isinstance(value, list):
        for i, v in enumerate(value):
            _check_range(schema, name, v, f"{key}[{i}]")
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        rng.check(key, value)


# ----- generic loading, validation and saving ----------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is Literal:
        return " or ".join(repr(a) for a in typing.get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check `value` against the annotation `tp`; ints are accepted for floats. Raises ValueError naming `key`."""
    origin = typing.get_origin(tp)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ValueError(f"{key} must be {_type_name(tp)}, not {_show(value)}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ValueError:
                pass
        raise ValueError(f"{key} has the wrong type: {_show(value)}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, not {_show(value)}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        key_tp, value_tp = typing.get_args(tp) or (Any, Any)
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table, not {_show(value)}")
        return {_coerce(k, key_tp, f"{key} key"): _coerce(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table, not {_show(value)}")
        return _build(tp, value, key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ValueError(f"{key} is too large: {_show(value)}") from None
    if tp is type(None) and value is None:
        return None
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{key} must be {_type_name(tp)}, not {_show(value)}")


def _build(schema: type[T], table: dict, prefix: str = "") -> T:
    hints = typing.get_type_hints(schema)
    names = [f.name for f in dataclasses.fields(schema)]
    kwargs = {}
    for key, value in table.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1, cutoff=0.5)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else f" (valid keys: {', '.join(names)})"
            raise ValueError(f"unknown key '{prefix}{key}'{hint}")
        kwargs[key] = _coerce(value, hints[key], prefix + key)
        _check_range(schema, key, kwargs[key], prefix + key)
    try:
        return schema(**kwargs)
    except ValueError as e:
        section = f"[{prefix.rstrip('.')}] " if prefix else ""
        raise ValueError(f"{section}{e}") from None


def _parse_override(text: str) -> tuple[list[str], Any]:
    if "=" not in text:
        raise ValueError(f"--set expects key=value, got {text!r}")
    key, raw = text.split("=", 1)
    try:
        value = tomllib.loads(f"v = {raw}")["v"]
    except (tomllib.TOMLDecodeError, ValueError):  # ValueError: an integer of more than 4,300 digits
        value = raw  # a bare word is taken as a string
    return key.strip().split("."), value


def _check_override_key(schema: type, path: list[str]) -> None:
    """Reject an override whose key is not in the schema, with the closest valid dotted key."""
    tp: Any = schema
    for i, part in enumerate(path):
        valid = {f.name: f for f in dataclasses.fields(tp)} if dataclasses.is_dataclass(tp) else {}
        if part not in valid:
            prefix = ".".join(path[:i])
            candidates = [(prefix + "." if prefix else "") + n for n in valid]
            close = difflib.get_close_matches(".".join(path[: i + 1]), candidates + _all_keys(schema), n=1, cutoff=0.5)
            hint = f" (did you mean '{close[0]}'?)" if close else ""
            raise ValueError(f"unknown key '{'.'.join(path)}'{hint}")
        tp = typing.get_type_hints(tp)[part]


def _all_keys(schema: type, prefix: str = "") -> list[str]:
    keys = []
    for f in dataclasses.fields(schema):
        tp = typing.get_type_hints(schema)[f.name]
        if dataclasses.is_dataclass(tp):
            keys += _all_keys(tp, prefix + f.name + ".")
        else:
            keys.append(prefix + f.name)
    return keys


def config_from_dict(schema: type[T], table: dict, overrides: list[str] = (), source: str = "config") -> T:
    """Validate a plain dict (e.g. parsed TOML) plus `key=value` overrides into `schema`."""
    table = _deep_copy(table)
    try:
        for text in overrides:
            path, value = _parse_override(text)
            _check_override_key(schema, path)
            node = table
            for i, part in enumerate(path[:-1]):
                node = node.setdefault(part, {})
                if not isinstance(node, dict):
                    raise ValueError(f"--set {'.'.join(path)}: {'.'.join(path[:i + 1])} must be a table, "
                                     f"not {node!r}")
            node[path[-1]] = value
        return _build(schema, table)
    except ValueError as e:
        raise ForesightError(f"{source}: {e}") from None


def read_toml(path: str | Path) -> dict:
    """The TOML file's tables, or a ForesightError naming the file when it is missing or not valid TOML."""
    path = Path(path)
    if path.is_dir():
        raise ForesightError(f"{path}: is a directory, not a config file")
    if not path.exists():
        raise ForesightError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text(encoding="utf-8"))
    except UnicodeDecodeError as e:
        raise ForesightError(f"{path}: not a TOML file (not UTF-8 text: byte {e.start} is {e.object[e.start]:#04x})") \
            from None
    except ValueError as e:  # TOMLDecodeError, or an integer too long to parse
        raise ForesightError(f"{path}: not valid TOML: {e}") from None
    except OSError as e:
        raise ForesightError(f"cannot read config file {path}: {e.strerror or e}") from None


def load_config(path: str | Path, schema: type[T] = RunConfig, overrides: list[str] = ()) -> T:
    return config_from_dict(schema, read_toml(path), overrides, source=str(path))


def config_to_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Any) -> str:
    return tomli_w.dumps(config_to_dict(cfg))


def save_config(cfg: Any, path: str | Path) -> None:
    from foresight.files import atomic_write_text  # one atomic-write helper for the whole project

    atomic_write_text(Path(path), dump_config(cfg))


def config_hash(cfg: Any) -> str:
    """sha256 of the config's canonical TOML: equal configs hash equally whatever their source formatting."""
    return hashlib.sha256(dump_config(cfg).encode()).hexdigest()


def _deep_copy(d: dict) -> dict:
    return {k: _deep_copy(v) if isinstance(v, dict) else v for k, v in d.items()}
