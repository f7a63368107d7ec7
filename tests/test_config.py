"""Config validation: every bad key or value is named, with the closest valid key."""

import pytest

from foresight.config import RunConfig, config_from_dict, dump_config, load_config
from foresight.errors import ForesightError


def test_tiny_config_loads_and_round_trips(tmp_path):
    cfg = load_config("configs/tiny.toml")
    assert cfg.model.d_model == 64 and cfg.train.tokens == 400_000
    saved = tmp_path / "c.toml"
    saved.write_text(dump_config(cfg))
    assert load_config(saved) == cfg


@pytest.mark.parametrize("table, expected", [
    ({"train": {"tokens": 10, "lrr": 0.1}}, "unknown key 'train.lrr' (did you mean 'train.lr'?)"),
    ({"train": {"tokens": 10}, "modle": {}}, "unknown key 'modle' (did you mean 'model'?)"),
    ({"train": {"tokens": 10, "lr": "fast"}}, "train.lr must be float, not 'fast'"),
    ({"train": {"tokens": 10, "schedule": "linear"}}, "train.schedule must be 'cosine' or 'wsd' or 'constant'"),
    ({"train": {"tokens": 10, "flops": 1e9}}, "set exactly one of train.tokens, train.flops, train.tokens_per_param"),
    ({"train": {}}, "set exactly one of"),
    ({"train": {"tokens": 10}, "model": {"d_model": 100, "n_heads": 3}}, "d_model (100) must be divisible by n_heads"),
    ({"train": {"tokens": 10}, "model": {"embed_mult": 0.0}}, "embed_mult must be positive, not 0.0"),
    ({"train": {"tokens": 10, "seq_len": 1024}}, "train.seq_len (1024) exceeds model.max_seq_len"),
])
def test_bad_configs_are_named(table, expected):
    with pytest.raises(ForesightError) as e:
        config_from_dict(RunConfig, table, source="x.toml")
    assert expected in str(e.value) and str(e.value).startswith("x.toml: ")


def test_overrides_are_typed_and_checked():
    cfg = config_from_dict(RunConfig, {"train": {"tokens": 10}},
                           ["train.lr=0.5", "model.parametrization=sp", "train.tokens=2_000"])
    assert cfg.train.lr == 0.5 and cfg.model.parametrization == "sp" and cfg.train.tokens == 2000
    with pytest.raises(ForesightError, match=r"unknown key 'train.l_r' \(did you mean 'train.lr'\?\)"):
        config_from_dict(RunConfig, {"train": {"tokens": 10}}, ["train.l_r=0.5"])
    with pytest.raises(ForesightError, match="train.batch_size must be int"):
        config_from_dict(RunConfig, {"train": {"tokens": 10}}, ["train.batch_size=1.5"])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(ForesightError, match="config file not found"):
        load_config(tmp_path / "nope.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\n")
    with pytest.raises(ForesightError, match="bad.toml: not valid TOML"):
        load_config(bad)


# ----- ranges ---------------------------------------------------------------------------------------------------------


def _schemas():
    """Every config schema: the run's sections, the forecast's tables, an eval task's settings."""
    import dataclasses
    import typing

    from foresight.align.config import RMConfig, SFTConfig
    from foresight.evals.spec import TaskSpec
    from foresight.scaling.ladder import CapabilitiesConfig, ForecastConfig

    seen, todo = [], [RunConfig, ForecastConfig, CapabilitiesConfig, TaskSpec, SFTConfig, RMConfig]
    while todo:
        schema = todo.pop()
        if schema in seen:
            continue
        seen.append(schema)
        for tp in typing.get_type_hints(schema).values():
            for t in (tp, *typing.get_args(tp)):
                if dataclasses.is_dataclass(t):
                    todo.append(t)
    return seen


def test_every_numeric_key_has_a_range_holding_its_default():
    import dataclasses
    import typing

    from foresight.config import CHECKED_BY_SCHEMA, RANGES

    missing, outside = [], []
    for schema in _schemas():
        hints = typing.get_type_hints(schema)
        for f in dataclasses.fields(schema):
            if hints[f.name] not in (int, float, list[int], list[float]):
                continue
            rng = RANGES.get(schema.__name__, {}).get(f.name)
            if rng is None and f.name in CHECKED_BY_SCHEMA.get(schema.__name__, ()):
                continue
            if rng is None:
                missing.append(f"{schema.__name__}.{f.name}")
                continue
            default = f.default if f.default is not dataclasses.MISSING else f.default_factory()
            for v in default if isinstance(default, list) else [default]:
                try:
                    rng.check(f.name, v)
                except ValueError as e:
                    outside.append(str(e))
    assert not missing, f"numeric keys without a range in foresight.config.RANGES: {missing}"
    assert not outside
    names = {s.__name__ for s in _schemas()}
    assert set(RANGES) <= names, f"ranges for schemas that no longer exist: {set(RANGES) - names}"


def test_shipped_configs_are_in_range():
    from pathlib import Path

    from foresight.align.config import DPOConfig, PPOConfig, RMConfig, SFTConfig
    from foresight.scaling.ladder import load_forecast_config
    from foresight.vlm.config import VLMConfig

    schemas = {"align-sft": SFTConfig, "align-rm": RMConfig, "align-dpo": DPOConfig, "align-ppo": PPOConfig}
    for path in sorted(Path("configs").glob("*.toml")):
        schema = next((s for prefix, s in schemas.items() if path.name.startswith(prefix)), None)
        if path.name.startswith("forecast"):
            load_forecast_config(path)
        elif schema is not None:
            load_config(path, schema)
        elif path.name.startswith("vlm-"):
            load_config(path, VLMConfig)
        else:
            load_config(path)


@pytest.mark.parametrize("override, expected", [
    # These four trained one step (exit 0) or ended in a traceback before ranges were checked on load.
    ("train.tokens=-400000", "train.tokens must be at least 0, not -400000"),
    ("train.flops=-1e12", "train.flops must be at least 0, not -1000000000000.0"),
    ("train.tokens_per_param=-20", "train.tokens_per_param must be at least 0, not -20.0"),
    ("data.val_tokens=-1", "data.val_tokens must be at least 1, not -1"),
    ("data.val_tokens=100", "data.val_tokens (100) must hold at least one sequence of train.seq_len (128) tokens"),
    ("train.lr=nan", "train.lr must be positive and at most 100, not nan"),
    ("train.lr=inf", "train.lr must be at most 100, not inf"),
    ("train.beta2=1.0", "train.beta2 must be at least 0 and less than 1, not 1.0"),
    ("train.warmup_fraction=1.5", "train.warmup_fraction must be between 0 and 1, not 1.5"),
    ("train.log_every=0", "train.log_every must be at least 1, not 0"),
    ("train.seed=-1", "train.seed must be at least 0, not -1"),
    ("model.d_model=1_000_000_000_000", "model.d_model must be at most 65536, not 1000000000000"),
    ("model.vocab_size=-1", "model.vocab_size must be at least 0, not -1 (0 = take the tokenizer's"),
    ("model.norm_eps=0", "model.norm_eps must be positive, not 0.0"),
    ("train.lr=" + "9" * 400, "train.lr is too large: 99999"),
    ("train.tokens=" + "9" * 5000, "train.tokens must be int, not '99999"),
    ("train.micro_batch_size=32", "train.micro_batch_size (32) exceeds train.batch_size (16)"),
])
def test_out_of_range_values_are_refused_on_load_naming_the_key(override, expected):
    with pytest.raises(ForesightError) as e:
        load_config("configs/tiny.toml", overrides=[override])
    message = str(e.value)
    assert expected in message and message.startswith("configs/tiny.toml: ") and "\n" not in message


def test_forecast_tables_are_checked_too():
    from foresight.scaling.ladder import load_forecast_config

    for override, expected in [("target.train.tokens_per_param=-1", "target.train.tokens_per_param must be at least 0"),
                               ("ladder.max_width=10000000", "ladder.max_width must be at most 65536"),
                               ("fit.top_runs=-2", "fit.top_runs must be at least 0, not -2 (0 = every run)"),
                               ("forecast.capabilities.timeout_s=nan", "forecast.capabilities.timeout_s must be")]:
        with pytest.raises(ForesightError, match=expected.replace("(", r"\(").replace(")", r"\)")):
            load_forecast_config("configs/forecast-cpu.toml", [override])


def test_a_config_that_is_a_directory_binary_or_unreadable_is_named(tmp_path):
    with pytest.raises(ForesightError, match=f"{tmp_path}: is a directory, not a config file"):
        load_config(tmp_path)
    binary = tmp_path / "b.toml"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\x00\xff")
    with pytest.raises(ForesightError, match=r"b.toml: not a TOML file \(not UTF-8 text: byte 0 is 0x89\)"):
        load_config(binary)
    table = tmp_path / "t.toml"
    table.write_text("train = 5\n")
    with pytest.raises(ForesightError, match="--set train.lr: train must be a table, not 5"):
        load_config(table, overrides=["train.lr=1"])
