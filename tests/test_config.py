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
