"""The shared training loop (train/loop.py) on its own, with a loss and batches that are not pre-training's, and
resume from a damaged checkpoint: the previous good one is used, to the same final loss."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from foresight.config import TrainConfig
from foresight.model import ModelConfig, Transformer
from foresight.train.distributed import DistInfo
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

REPO = Path(__file__).resolve().parents[1]


def _masked_run(out: Path, steps: int, resume: bool = False, checkpoint_every: int = 4):
    """A loss on the second half of each sequence only (as SFT scores assistant tokens only), two micro-batches per
    step, batches a function of the step: everything pre-training does not exercise."""
    torch.manual_seed(0)
    model = Transformer(ModelConfig(vocab_size=32, d_model=32, n_layers=1, n_heads=2, max_seq_len=16))
    cfg = TrainConfig(lr=1e-2, warmup_steps=1, eval_every=0, log_every=1, checkpoint_every=checkpoint_every,
                      keep_checkpoints=2, seq_len=16, batch_size=8, tokens=1)
    patterns = torch.arange(16) % 5  # a sequence the model can learn to continue

    def batch(step: int, micro: int):
        g = torch.Generator().manual_seed(step * 2 + micro)
        shift = torch.randint(0, 5, (4, 1), generator=g)
        return (patterns[None, :] + shift) % 32

    def masked_loss(forward, tokens):
        logits = forward(tokens[:, :-1]).float()
        targets = tokens[:, 1:].clone()
        targets[:, : targets.shape[1] // 2] = -100  # not scored
        return F.cross_entropy(logits.flatten(0, 1), targets.flatten(), ignore_index=-100)

    def evaluate():
        with torch.no_grad():
            return {"val_loss": masked_loss(model, batch(10_000, 0)).item()}

    result = train_loop(model, lambda m: build_optimizer(m, cfg), cfg=cfg, out=out, steps=steps, accum=2, tokens_per_step=8 * 16,
                        batch=batch, loss=masked_loss, evaluate=evaluate, info=DistInfo(),
                        device=torch.device("cpu"), autocast=torch.autocast("cpu", enabled=False), resume=resume,
                        progress=False)
    return model, result


def test_loop_trains_another_loss_and_resumes_exactly(tmp_path):
    ref_model, ref = _masked_run(tmp_path / "ref", steps=12)
    rows = [json.loads(line) for line in (tmp_path / "ref" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 13))
    assert rows[-1]["train_loss"] < rows[0]["train_loss"] - 1.0  # it learned
    assert ref.metrics["val_loss"] < rows[0]["train_loss"] - 1.0

    # Stop after step 8 (a checkpoint), then resume to 12: the same weights and losses as the run that never stopped.
    _masked_run(tmp_path / "split", steps=12, checkpoint_every=4)
    for late in ("step_00000012",):
        shutil.rmtree(tmp_path / "split" / "checkpoints" / late)
    (tmp_path / "split" / "checkpoints" / "latest").write_text("step_00000008\n")
    model, result = _masked_run(tmp_path / "split", steps=12, resume=True)
    assert result.start_step == 8
    for (name, a), b in zip(ref_model.state_dict().items(), model.state_dict().values()):
        assert torch.equal(a, b), name
    assert result.train_loss == ref.train_loss


def _train(*args):
    return subprocess.run([sys.executable, "-m", "foresight", "train", "configs/tiny.toml", *map(str, args)],
                          capture_output=True, text=True, cwd=REPO)


def test_resume_over_a_damaged_checkpoint_uses_the_previous_one(small_dataset, tmp_path):
    from test_train import small_overrides

    args = small_overrides(small_dataset, **{"train.tokens": 24 * 8 * 64, "train.checkpoint_every": 10})
    ref = _train("--out", tmp_path / "ref", "--no-progress", *args)
    assert ref.returncode == 0, ref.stderr
    expected = json.loads((tmp_path / "ref" / "summary.json").read_text())
    assert sorted(p.name for p in (tmp_path / "ref" / "checkpoints").glob("step_*")) == \
        ["step_00000020", "step_00000024"]

    for damaged in ("model.safetensors", "optimizer.pt", "state.json"):
        run = tmp_path / damaged
        shutil.copytree(tmp_path / "ref", run)
        (run / "summary.json").unlink()  # as if killed after the last checkpoint
        path = run / "checkpoints" / "step_00000024" / damaged
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])  # truncated
        resumed = _train("--out", run, "--resume", "--no-progress", *args)
        assert resumed.returncode == 0, resumed.stderr
        assert "Traceback" not in resumed.stderr
        assert f"skipping checkpoint step_00000024" in resumed.stderr and damaged in resumed.stderr
        assert "from step_00000020" in resumed.stdout
        got = json.loads((run / "summary.json").read_text())
        assert abs(got["final_val_loss"] - expected["final_val_loss"]) <= 1e-6, damaged

    # Nothing readable at all: one line naming the file, no traceback.
    run = tmp_path / "all-damaged"
    shutil.copytree(tmp_path / "ref", run)
    for ckpt in (run / "checkpoints").glob("step_*"):
        (ckpt / "optimizer.pt").write_bytes(b"not a checkpoint")
    refused = _train("--out", run, "--resume", "--no-progress", *args)
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert "optimizer.pt" in refused.stderr and "could be read" in refused.stderr


def test_trim_step_log_drops_rows_past_the_checkpoint_and_a_cut_last_row(tmp_path):
    from foresight.errors import ForesightError
    from foresight.train.loop import trim_step_log

    log = tmp_path / "rollouts.jsonl"
    rows = [json.dumps({"step": s, "reply": f"r{s}"}) for s in (4, 4, 8, 12)]
    log.write_text("\n".join(rows) + '\n{"step": 16, "rep')  # killed while appending the last row
    trim_step_log(log, 8)
    assert log.read_text() == "\n".join(rows[:3]) + "\n"
    trim_step_log(tmp_path / "absent.jsonl", 8)  # nothing to trim
    log.write_text(rows[0] + "\n{oops\n" + rows[1] + "\n")  # damaged inside: not silently dropped
    with pytest.raises(ForesightError, match=r"rollouts.jsonl:2: not a step-keyed JSON row"):
        trim_step_log(log, 8)
    log.write_text(rows[0] + '\n{"iteration": 1}\n')  # readable but no step
    with pytest.raises(ForesightError, match=r"rollouts.jsonl:2: not a step-keyed JSON row"):
        trim_step_log(log, 8)
