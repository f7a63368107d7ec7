"""The trainer end to end on real (small) data: loss falls, the summary is consistent, a SIGKILLed run resumes to
the same final loss, 2 data-parallel processes match 1, and bad input gets a clear message."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from foresight.config import load_config
from foresight.train.flops import flops_per_token

REPO = Path(__file__).resolve().parents[1]
SUMMARY_KEYS = {"final_val_loss", "final_train_loss", "flops", "params", "non_embedding_params", "tokens", "steps",
                "wall_seconds", "tokens_per_second", "mfu"}


def small_overrides(data_dir, **extra):
    """tiny.toml on the test corpus, shortened; one thread so runs are deterministic and light."""
    values = {"data.path": f'"{data_dir}"', "data.val_tokens": 16384, "train.tokens": 96 * 1024,
              "train.batch_size": 8, "train.seq_len": 64, "train.eval_every": 0, "train.log_every": 1,
              "train.checkpoint_every": 20, "train.threads": 1, "model.d_model": 64, "model.mup_base_width": 64}
    values.update(extra)
    args = []
    for k, v in values.items():
        args += ["--set", f"{k}={v}"]
    return args


def foresight(*args, **kw):
    return subprocess.run([sys.executable, "-m", "foresight", *map(str, args)], capture_output=True, text=True,
                          cwd=REPO, **kw)


def test_train_tiny_loss_falls_and_summary_is_consistent(small_dataset, tmp_path):
    out = tmp_path / "run"
    proc = foresight("train", "configs/tiny.toml", "--out", out, "--no-progress",
                     *small_overrides(small_dataset, **{"train.tokens": 400_000, "train.batch_size": 16,
                                                        "train.eval_every": 10}))
    assert proc.returncode == 0, proc.stderr
    s = json.loads((out / "summary.json").read_text())
    assert SUMMARY_KEYS <= s.keys()
    cfg = load_config(out / "config.toml")  # the resolved config is saved and loads back
    assert cfg.model.vocab_size > 0
    assert s["tokens"] == s["steps"] * 16 * 64
    assert s["flops"] == pytest.approx(flops_per_token(cfg.model, 64) * s["tokens"], rel=1e-12)
    assert 0 < s["mfu"] < 1 and s["tokens_per_second"] > 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    val = [r["val_loss"] for r in rows if "val_loss" in r]
    assert val[-1] == pytest.approx(s["final_val_loss"])
    assert val[-1] < val[0] - 1.0  # it learned
    # well below the unigram entropy of the corpus: the model uses context
    assert s["final_val_loss"] < s["unigram_entropy_nats"] - 0.5
    assert (out / "tokenizer").is_dir() and list((out / "tensorboard").iterdir())


def test_sigkill_then_resume_matches_uninterrupted(small_dataset, tmp_path):
    args = small_overrides(small_dataset, **{"train.checkpoint_every": 5})
    ref = foresight("train", "configs/tiny.toml", "--out", tmp_path / "ref", "--no-progress", *args)
    assert ref.returncode == 0, ref.stderr
    expected = json.loads((tmp_path / "ref" / "summary.json").read_text())

    out = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "foresight", "train", "configs/tiny.toml", "--out", str(out),
                             "--no-progress", *args], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    latest = out / "checkpoints" / "latest"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if latest.exists() and latest.read_text().strip() >= "step_00000010":
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (out / "summary.json").exists()

    refused = foresight("train", "configs/tiny.toml", "--out", out, *args)
    assert refused.returncode == 2 and "--resume" in refused.stderr and "Traceback" not in refused.stderr

    resumed = foresight("train", "configs/tiny.toml", "--out", out, "--resume", "--no-progress", *args)
    assert resumed.returncode == 0, resumed.stderr
    assert "resuming" in resumed.stdout
    got = json.loads((out / "summary.json").read_text())
    assert abs(got["final_val_loss"] - expected["final_val_loss"]) <= 1e-6
    assert abs(got["final_train_loss"] - expected["final_train_loss"]) <= 1e-6
    steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert steps == sorted(set(steps)) and steps[-1] == expected["steps"]  # no duplicated rows after resume


def test_two_processes_match_one(small_dataset, tmp_path):
    args = small_overrides(small_dataset, **{"train.tokens": 20 * 8 * 64, "train.checkpoint_every": 0})
    one = foresight("train", "configs/tiny.toml", "--out", tmp_path / "one", "--no-progress", *args)
    assert one.returncode == 0, one.stderr
    env = dict(os.environ, OMP_NUM_THREADS="1")
    two = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                          "-m", "foresight", "train", "configs/tiny.toml", "--out", str(tmp_path / "two"),
                          "--no-progress", *args], capture_output=True, text=True, cwd=REPO, env=env)
    assert two.returncode == 0, two.stderr[-3000:]
    load = lambda d: [json.loads(line) for line in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    a, b = load("one"), load("two")
    assert len(a) == len(b) == 20
    for ra, rb in zip(a, b):
        assert abs(ra["train_loss"] - rb["train_loss"]) < 1e-4
    sa = json.loads((tmp_path / "one" / "summary.json").read_text())
    sb = json.loads((tmp_path / "two" / "summary.json").read_text())
    assert sb["world_size"] == 2 and abs(sa["final_val_loss"] - sb["final_val_loss"]) < 1e-4


def test_missing_data_is_explained(tmp_path):
    proc = foresight("train", "configs/tiny.toml", "--out", tmp_path / "r",
                     "--set", f"data.root={str(tmp_path / 'nodata')!r}".replace("'", '"'))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "foresight data prepare" in proc.stderr


def test_bad_config_key_named(tmp_path):
    proc = foresight("train", "configs/tiny.toml", "--out", tmp_path / "r", "--set", "train.learning_rate=1")
    assert proc.returncode == 2 and "unknown key 'train.learning_rate'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_corrupted_shard_named(small_dataset, tmp_path):
    import shutil

    copy = tmp_path / "data"
    shutil.copytree(small_dataset, copy)
    shard = next(p for p in copy.rglob("*") if p.is_file() and "val" in p.name and p.suffix in (".bin", ".npy"))
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0xFF
    shard.write_bytes(bytes(raw))
    proc = foresight("train", "configs/tiny.toml", "--out", tmp_path / "r", *small_overrides(copy))
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "checksum" in proc.stderr and shard.name in proc.stderr
