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
    compile: bool = False
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
            raise ValueError(f"{key} must be {_type_name(tp)}, not {value!r}")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _coerce(value, option, key)
            except ValueError:
                pass
        raise ValueError(f"{key} has the wrong type: {value!r}")
    if origin is list:
        (item_tp,) = typing.get_args(tp) or (Any,)
        if not isinstance(value, list):
            raise ValueError(f"{key} must be a list, not {value!r}")
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if tp is Any:
        return value
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ValueError(f"{key} must be a table, not {value!r}")
        return _build(tp, value, key + ".")
    if tp is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if tp is type(None) and value is None:
        return None
    if isinstance(tp, type) and isinstance(value, tp) and not (tp is int and isinstance(value, bool)):
        return value
    raise ValueError(f"{key} must be {_type_name(tp)}, not {value!r}")


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
    except tomllib.TOMLDecodeError:
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
            for part in path[:-1]:
                node = node.setdefault(part, {})
            node[path[-1]] = value
        return _build(schema, table)
    except ValueError as e:
        raise ForesightError(f"{source}: {e}") from None


def read_toml(path: str | Path) -> dict:
    """The TOML file's tables, or a ForesightError naming the file when it is missing or not valid TOML."""
    path = Path(path)
    if not path.is_file():
        raise ForesightError(f"config file not found: {path}")
    try:
        return tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise ForesightError(f"{path}: not valid TOML: {e}") from None


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
