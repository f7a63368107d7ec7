"""FSDP2 on CPU (gloo): two sharded processes train exactly as one process does, a run saved by two processes
resumes on one (torch.distributed.checkpoint reshards), activation checkpointing, gradient accumulation, bf16 mixed
precision and torch.compile of the blocks keep the losses, and what FSDP cannot shard is refused by name."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_train import foresight, small_overrides

REPO = Path(__file__).resolve().parents[1]
STEPS = 20


def fsdp_args(data_dir, **extra):
    return small_overrides(data_dir, **{"train.tokens": STEPS * 8 * 64, "train.checkpoint_every": 10,
                                        "train.parallel": '"fsdp"', **extra})


def torchrun(out: Path, args: list, resume: bool = False) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                           "-m", "foresight", "train", "configs/tiny.toml", "--out", str(out), "--no-progress",
                           *(["--resume"] if resume else []), *args],
                          capture_output=True, text=True, cwd=REPO, env=env)


def losses(run: Path) -> list[float]:
    return [json.loads(line)["train_loss"] for line in (run / "metrics.jsonl").read_text().splitlines()]


def summary(run: Path) -> dict:
    return json.loads((run / "summary.json").read_text())


@pytest.fixture(scope="module")
def one_process(small_dataset, tmp_path_factory):
    """The reference: the same config trained in one process (nothing to shard)."""
    out = tmp_path_factory.mktemp("fsdp") / "one"
    proc = foresight("train", "configs/tiny.toml", "--out", out, "--no-progress", *fsdp_args(small_dataset))
    assert proc.returncode == 0, proc.stderr
    return out


def assert_same_run(a: Path, b: Path, tol: float = 1e-4) -> None:
    la, lb = losses(a), losses(b)
    assert len(la) == len(lb) == STEPS
    assert max(abs(x - y) for x, y in zip(la, lb)) < tol
    assert abs(summary(a)["final_val_loss"] - summary(b)["final_val_loss"]) < tol


def test_two_fsdp_ranks_match_one_process_and_resume_on_one(small_dataset, one_process, tmp_path):
    two = tmp_path / "two"
    proc = torchrun(two, fsdp_args(small_dataset))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(two)["world_size"] == 2
    assert_same_run(one_process, two)
    final = two / "checkpoints" / "step_00000020"
    # sharded: one file of shards per process, and the whole model beside them at the end for eval and export
    assert sorted(p.name for p in (final / "sharded").glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]
    assert (final / "model.safetensors").is_file()
    assert not (two / "checkpoints" / "step_00000010" / "model.safetensors").exists()

    # Saved by 2 processes at step 10 (the run killed before step 20's save), resumed by 1: the same finish.
    resumed = tmp_path / "resumed"
    shutil.copytree(two, resumed)
    shutil.rmtree(resumed / "checkpoints" / "step_00000020")
    (resumed / "checkpoints" / "latest").write_text("step_00000010\n")
    proc = foresight("train", "configs/tiny.toml", "--out", resumed, "--resume", "--no-progress",
                     *fsdp_args(small_dataset))
    assert proc.returncode == 0, proc.stderr
    assert "resuming" in proc.stdout and "step 10 of 20" in proc.stdout
    assert summary(resumed)["world_size"] == 1
    assert_same_run(two, resumed, tol=1e-5)

    # And the other way: saved by 1 process at step 10, resumed by 2.
    grown = tmp_path / "grown"
    shutil.copytree(one_process, grown)
    shutil.rmtree(grown / "checkpoints" / "step_00000020")
    (grown / "checkpoints" / "latest").write_text("step_00000010\n")
    proc = torchrun(grown, fsdp_args(small_dataset), resume=True)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert summary(grown)["world_size"] == 2
    assert_same_run(one_process, grown, tol=1e-5)

    # The finished run's weights load like any run's.
    from foresight.weights.load import load_model

    loaded = load_model(str(two))
    assert loaded.model.num_params() == summary(two)["params"]


def test_fsdp_with_tied_embeddings_activation_checkpointing_and_accumulation_matches(small_dataset, tmp_path):
    """SmolLM2's shape: the embedding and the head share one weight (standard parametrization: muP unties them),
    which must live in one FSDP unit; two micro-batches per step, blocks recomputed in the backward pass."""
    tied = {"model.tie_embeddings": "true", "model.parametrization": '"sp"'}
    one = tmp_path / "one"
    proc = foresight("train", "configs/tiny.toml", "--out", one, "--no-progress", *fsdp_args(small_dataset, **tied))
    assert proc.returncode == 0, proc.stderr
    out = tmp_path / "ac"
    proc = torchrun(out, fsdp_args(small_dataset, **tied, **{"train.activation_checkpointing": "true",
                                                             "train.micro_batch_size": 2}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(one, out)
    from foresight.weights.load import load_model

    model = load_model(str(out)).model
    assert model.lm_head.weight is model.embed.weight


def test_fsdp_bf16_mixed_precision_and_compiled_blocks(small_dataset, one_process, tmp_path):
    bf16 = tmp_path / "bf16"
    proc = torchrun(bf16, fsdp_args(small_dataset, **{"train.dtype": '"bfloat16"'}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    # bf16 parameters in the forward pass move the loss a little, never far (fp32 reduction and master weights)
    assert 0 < abs(summary(bf16)["final_val_loss"] - summary(one_process)["final_val_loss"]) < 0.02

    compiled = tmp_path / "compiled"
    proc = torchrun(compiled, fsdp_args(small_dataset, **{"train.compile": "true"}))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert_same_run(one_process, compiled)


def test_fsdp_refused_where_it_cannot_shard(tmp_path):
    proc = foresight("align", "sft", "configs/align-sft-smollm2.toml", "--out", tmp_path / "r",
                     "--set", 'train.parallel="fsdp"')
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "train.parallel = 'fsdp' is for pre-training" in proc.stderr

    proc = foresight("train", "configs/tiny.toml", "--out", tmp_path / "r2", "--set", 'train.parallel="zero3"')
    assert proc.returncode == 2 and "train.parallel" in proc.stderr and "Traceback" not in proc.stderr


def test_truncated_shard_is_named_and_the_checkpoint_before_used(small_dataset, one_process, tmp_path):
    from foresight.errors import ForesightError
    from foresight.train import checkpoint as ckpt

    run = tmp_path / "run"
    shutil.copytree(one_process, run)
    newest = run / "checkpoints" / "step_00000020"
    shard = next((newest / "sharded").glob("*.distcp"))
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(ForesightError, match=r"shard .*step_00000020/sharded/__0_0\.distcp is truncated"):
        ckpt.load_checkpoint(newest)
    loaded = ckpt.load_latest(run / "checkpoints", warn=False)
    assert loaded.directory.name == "step_00000010" and loaded.sharded
    (newest / "sharded" / ".metadata").unlink()
    with pytest.raises(ForesightError, match=r"has no \.metadata"):
        ckpt.load_checkpoint(newest)
    # resuming from the damaged run goes back to step 10 and finishes as the undamaged run did
    proc = foresight("train", "configs/tiny.toml", "--out", run, "--resume", "--no-progress",
                     *fsdp_args(small_dataset))
    assert proc.returncode == 0, proc.stderr
    assert "skipping checkpoint step_00000020" in proc.stderr and "step 10 of 20" in proc.stdout
    assert_same_run(one_process, run, tol=1e-5)
