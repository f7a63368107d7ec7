"""Ladder planning and the forecast pipeline end to end (on a miniature target, on real text)."""

import json
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from foresight.errors import ForesightError
from foresight.scaling.ladder import load_forecast_config, plan_ladder, target_compute

REPO = Path(__file__).resolve().parents[1]


def test_plan_spreads_runs_evenly_below_the_target():
    fc = load_forecast_config(REPO / "configs/forecast-cpu.toml")
    fc.target.model.vocab_size = 1024
    runs = plan_ladder(fc)
    compute = [r["compute"] for r in runs]
    assert len(runs) >= 5 and compute == sorted(compute)
    assert compute[-1] / compute[0] >= 30 * 0.8  # the ladder spans ~30x (tokens round to whole steps)
    assert target_compute(fc.target) / compute[-1] >= fc.ladder.extrapolation  # at least, never a rounding under
    steps = [math.log(b / a) for a, b in zip(compute, compute[1:])]
    assert max(steps) / min(steps) < 2.0  # roughly even in log-compute
    assert all(r["steps"] >= fc.ladder.min_steps or r["batch_size"] == fc.ladder.min_batch for r in runs)
    # more compute never means fewer optimizer steps (batch grows as sqrt(tokens), steps too)
    assert [r["steps"] for r in runs] == sorted(r["steps"] for r in runs)
    lrs = {r["config"].train.lr for r in runs}
    assert lrs == {fc.target.train.lr}  # one set of hyperparameters at every size (muP)
    assert all(r["config"].model.head_dim == fc.ladder.head_dim for r in runs)


def test_gpu_ladder_stays_a_thousandth_of_the_target():
    fc = load_forecast_config(REPO / "configs/forecast-gpu.toml")
    vocab = 1024  # bpe:1024, the GPU config's tokenizer
    fc.target.model.vocab_size = vocab
    runs = plan_ladder(fc)
    assert fc.ladder.extrapolation >= 1000
    assert target_compute(fc.target) / max(r["compute"] for r in runs) >= 1000


def test_bad_ladder_settings_are_named(tmp_path):
    with pytest.raises(ForesightError, match="ladder.runs must be at least 5"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ["ladder.runs=3"])
    with pytest.raises(ForesightError, match="ladder.span must be at least 30"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ["ladder.span=10"])


def _mini_overrides(data_dir):
    return ["--set", f'target.data.path="{data_dir}"', "--set", "target.data.val_tokens=32768",
            "--set", "target.train.flops=6e11", "--set", "target.model.d_model=48", "--set", "target.model.n_heads=3",
            "--set", "target.model.n_layers=2", "--set", "ladder.runs=5", "--set", "ladder.min_steps=60",
            "--set", "target.train.batch_size=16", "--set", "target.train.threads=1"]


@pytest.mark.timeout(600)
def test_forecast_end_to_end_and_resume(small_dataset, tmp_path):
    out = tmp_path / "fc"
    sign_key = tmp_path / "key"
    subprocess.run([sys.executable, "-m", "foresight", "ledger", "keygen", "--out", str(sign_key)], check=True,
                   cwd=REPO)
    cmd = [sys.executable, "-m", "foresight", "forecast", "configs/forecast-cpu.toml", "--out", str(out),
           "--sign-key", str(sign_key), *_mini_overrides(small_dataset)]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    result = json.loads((out / "forecast.json").read_text())
    for key in ("predicted_loss", "interval", "actual_loss", "relative_error", "extrapolation", "ladder",
                "ledger_entry"):
        assert key in result
    low, high = result["interval"]
    assert low <= result["predicted_loss"] <= high
    assert result["extrapolation"] >= 9.5 and len(result["ladder"]) == 5
    actual = json.loads((out / "target" / "summary.json").read_text())["final_val_loss"]
    assert result["actual_loss"] == actual
    assert result["relative_error"] == pytest.approx((result["predicted_loss"] - actual) / actual)
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "http" not in html.split("<body>")[1]  # self-contained
    assert (out / "loss_vs_compute.png").stat().st_size > 10_000
    # the prediction was registered before the target wrote anything
    entry = json.loads((out / "ledger.jsonl").read_text().splitlines()[-1])
    target_start = min(p.stat().st_mtime for p in (out / "target").rglob("*") if p.is_file())
    assert (out / "prediction.json").stat().st_mtime <= target_start
    assert entry["predictions"][0]["y"] == result["predicted_loss"] and entry["kind"] == "loss"
    # the head it prints is the ledger's, and verifies with the signatures of the key it was given
    assert f"keep this head to detect later edits: {entry['sha256']}" in first.stdout
    assert result["ledger_head"] == entry["sha256"]
    verify = subprocess.run([sys.executable, "-m", "foresight", "ledger", "verify", str(out / "ledger.jsonl"),
                             "--expect", entry["sha256"], "--public-key", f"{sign_key}.pub"],
                            capture_output=True, text=True, cwd=REPO)
    assert verify.returncode == 0, verify.stderr
    # `foresight ladder plan` on the same config plans what the forecast planned, target compute included (it
    # once left the output head out of the target's FLOPs by planning before vocab_size = 0 was resolved)
    plan_only = subprocess.run([sys.executable, "-m", "foresight", "ladder", "plan", "configs/forecast-cpu.toml",
                                "--out", str(tmp_path / "plan"), *_mini_overrides(small_dataset)],
                               capture_output=True, text=True, cwd=REPO)
    assert plan_only.returncode == 0, plan_only.stderr
    assert json.loads((tmp_path / "plan" / "plan.json").read_text()) == json.loads((out / "plan.json").read_text())

    # A directory registered before ledger entry format 2 resumes: its old-shape record is passed on as it is.
    from foresight.scaling.ledger import canonical, entry_hash

    old = {k: entry[k] for k in ("index", "time_utc", "prev_sha256", "target_config_sha256", "target_compute",
                                 "ladder_results", "law")}
    old.update(params=entry["predictions"][0]["params"], prediction={
        k: entry["predictions"][0][k] for k in ("x", "y", "low", "high", "level")})
    old["sha256"] = entry_hash(old)
    (out / "ledger.jsonl").write_text(canonical(old) + "\n")
    (out / "prediction.json").write_text(json.dumps(old, indent=1) + "\n")
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0 and again.stdout.count("(done, skipped)") == 5
    assert f"keep this head to detect later edits: {old['sha256']}" in again.stdout
    resumed = json.loads((out / "forecast.json").read_text())
    assert resumed["predicted_loss"] == result["predicted_loss"] and resumed["ledger_entry"] == old
    # the job's wall time adds up across invocations instead of being replaced by the last one's few seconds
    assert resumed["invocations"] == 2 and resumed["seconds"] > result["seconds"]

    changed = subprocess.run(cmd + ["--set", "target.train.lr=0.02"], capture_output=True, text=True, cwd=REPO)
    assert changed.returncode == 2 and "different config" in changed.stderr


def test_isoflop_grid_plans_each_shape_at_the_ladder_levels(script):
    """scripts/isoflop_grid.py: the ladder's own run is one of the grid's shapes at every level, every run spends
    its level's compute (to whole steps), and shapes too far from compute-optimal are left out."""
    grid = script("isoflop_grid")
    fc = load_forecast_config(REPO / "configs/forecast-cpu.toml")
    fc.target.model.vocab_size = 1024
    ladder = plan_ladder(fc)
    shapes = [(32, 1), (32, 2), (48, 2), (64, 2), (80, 2)]
    runs = grid.plan_grid(fc, shapes, (3.0, 150.0))
    assert {r["level"] for r in runs} == set(range(len(ladder)))
    for level, planned in enumerate(ladder):
        at = [r for r in runs if r["level"] == level]
        assert all(3.0 <= r["tokens_per_param"] <= 150.0 for r in at)
        assert len(at) < len(shapes)  # some shape is always out of range at these sizes
        assert all(abs(r["compute"] / planned["compute"] - 1) < 0.05 for r in at)
        assert planned["name"].split("_", 1)[1] in {r["name"].split("_", 1)[1] for r in at}
    with pytest.raises(ForesightError, match="not WIDTHxLAYERS"):
        grid._shape("48-2")


def test_fit_settings_are_validated_and_saved_only_when_set():
    from foresight.scaling.ladder import FitConfig, dump_forecast_config

    with pytest.raises(ForesightError, match="fit.law must be one of 'power', 'log_linear', not 'cubic'"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ['fit.law="cubic"'])
    with pytest.raises(ForesightError, match=r"fit.top_runs must be 0 \(every run\) or between 3 and ladder.runs"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ["fit.top_runs=2", "ladder.runs=6"])
    with pytest.raises(ForesightError, match="fit.top_runs"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ["fit.top_runs=7", "ladder.runs=6"])
    default = load_forecast_config(REPO / "configs/forecast-cpu.toml", ['fit.law="power"', "fit.top_runs=0"])
    assert default.fit == FitConfig() and "[fit]" not in dump_forecast_config(default)
    local = load_forecast_config(REPO / "configs/forecast-cpu.toml", ['fit.law="log_linear"', "fit.top_runs=4"])
    assert 'law = "log_linear"' in dump_forecast_config(local) and "top_runs = 4" in dump_forecast_config(local)


def _ladder_summaries(losses, c0=1e11, step=2.0):
    return [{"flops": c0 * step ** i, "final_val_loss": y} for i, y in enumerate(losses)]


def test_forecast_fit_on_the_top_runs_has_the_whole_ladders_noise_as_its_floor():
    """[fit] top_runs = 3 with the log-linear law: the line goes through the top three runs only (the same point
    prediction as fitting those three alone), and the interval is at least the scatter of all six runs carried to
    the target by the line's leverage."""
    import numpy as np
    from scipy.stats import norm

    from foresight.scaling.fit import fit_law, ladder_noise, leverage
    from foresight.scaling.forecast import _fit_ladder
    from foresight.scaling.ladder import FitConfig

    # a knee low in the ladder, a straight line in ln C above it, and a little noise
    losses = [4.60, 4.25, 4.06, 3.91, 3.71, 3.55]
    summaries = _ladder_summaries(losses)
    c_target = summaries[-1]["flops"] * 10
    fit = _fit_ladder(summaries, c_target, FitConfig("log_linear", 3))
    assert fit["n_points"] == 3 and fit["x"] == [s["flops"] for s in summaries[-3:]]
    assert fit["ladder_y"] == losses and fit["law"] == "L(C) = alpha - beta*ln(C)"
    alone = fit_law("log_linear", fit["x"], fit["y"])
    p = fit["prediction"]
    assert p["y"] == pytest.approx(alone.predict(c_target), rel=1e-9)
    noise = ladder_noise([s["flops"] for s in summaries], losses)
    assert fit["noise_floor"] == pytest.approx(noise) and noise > 0
    h = leverage(alone.law, alone.theta, np.log(alone.inputs) - alone.log_ref,
                 np.log([[c_target]]) - alone.log_ref)[0]
    floor = norm.ppf(0.95) * noise * np.sqrt(1 + h)
    assert np.log(p["high"] / p["y"]) >= floor * (1 - 1e-9) and np.log(p["y"] / p["low"]) >= floor * (1 - 1e-9)
    assert p["low"] < p["y"] < p["high"] and len(fit["curve"]["x"]) == 60

    # the default fits every run with the report's law, and has no floor from outside the fitted runs
    default = _fit_ladder(summaries, c_target, FitConfig())
    assert default["n_points"] == 6 and default["noise_floor"] == 0.0 and default["law"].startswith("L(C) = a*C^(-b)")


def test_parallel_jobs_each_hold_a_slot_and_its_environment(tmp_path):
    """run_jobs gives each running job its own slot (the ladder maps slots to GPUs): two jobs that overlap in time
    never share one, and a later job reuses a freed slot."""
    from foresight.processes import run_jobs

    # each job records its slot and start/end times; all three overlap their neighbours
    code = ("import os, sys, time; t0 = time.time(); time.sleep(float(sys.argv[1])); "
            "print(os.environ['JOB_SLOT'], t0, time.time())")
    jobs = [(f"j{i}", [sys.executable, "-c", code, str(d)], tmp_path / f"j{i}.log")
            for i, d in enumerate([2.0, 0.3, 0.3])]
    done = []
    failures = run_jobs(jobs, 2, lambda name, started: done.append(name), say=lambda *a: None,
                        slot_env=lambda slot: {"JOB_SLOT": str(slot)})
    assert failures == [] and sorted(done) == ["j0", "j1", "j2"]
    rows = {j[0]: (j[2].read_text().split()) for j in jobs}
    slot = {name: int(r[0]) for name, r in rows.items()}
    span = {name: (float(r[1]), float(r[2])) for name, r in rows.items()}
    assert slot["j0"] == 0 and slot["j1"] == 1  # started together: different slots
    assert slot["j2"] == 1  # j1's slot, freed while j0 still runs
    assert span["j2"][0] < span["j0"][1]  # j2 ran beside j0, so sharing j0's slot would have been a clash


def test_ladder_runs_are_spread_over_the_visible_gpus(monkeypatch):
    import torch

    from foresight.scaling.ladder import gpu_slot_env, ladder_gpus

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    assert ladder_gpus("cuda") == ["0", "1", "2", "3"] and ladder_gpus("auto") == ["0", "1", "2", "3"]
    assert ladder_gpus("cpu") == []  # a CPU ladder on a GPU machine stays on the CPU
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,5")  # only what the caller was given
    gpus = ladder_gpus("cuda")
    assert gpus == ["2", "5"]
    env = gpu_slot_env(gpus)
    assert [env(s)["CUDA_VISIBLE_DEVICES"] for s in range(3)] == ["2", "5", "2"]
    assert gpu_slot_env([]) is None
    # a run split over two processes gets two GPUs, each slot its own pair
    pairs = gpu_slot_env(["0", "1", "2", "3"], per_job=2)
    assert [pairs(s)["CUDA_VISIBLE_DEVICES"] for s in range(2)] == ["0,1", "2,3"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert ladder_gpus("auto") == []


def test_batch_multiple_rounds_the_plan_and_is_saved_only_when_set():
    from foresight.scaling.ladder import dump_forecast_config

    with pytest.raises(ForesightError, match="ladder.batch_multiple must be at least 1, not 0"):
        load_forecast_config(REPO / "configs/forecast-cpu.toml", ["ladder.batch_multiple=0"])
    plans = {}
    for m in (1, 8):
        fc = load_forecast_config(REPO / "configs/forecast-gpu.toml", [f"ladder.batch_multiple={m}"])
        fc.target.model.vocab_size = 1024  # bpe:1024, the GPU config's tokenizer (no prepared data needed)
        plans[m] = plan_ladder(fc)
        assert ("batch_multiple" in dump_forecast_config(fc)) == (m != 1)
    assert all(r["batch_size"] % 8 == 0 for r in plans[8])
    assert any(r["batch_size"] % 8 for r in plans[1])  # so the rounding above was needed
    # the same models and compute levels: only the batch (and so the step count) moves
    assert [r["name"] for r in plans[8]] == [r["name"] for r in plans[1]]
    for a, b in zip(plans[1], plans[8]):
        assert abs(b["batch_size"] - a["batch_size"]) < 8 and b["compute"] == pytest.approx(a["compute"], rel=0.01)


def test_ladder_run_over_several_processes_matches_one(small_dataset, tmp_path):
    """`ladder run --procs-per-run 2` trains a run as one torchrun job of two data-parallel processes; it must
    reach the loss the same run reaches in one process. A batch that does not split is refused before anything
    starts, naming the run."""
    out = tmp_path / "ladder"
    overrides = _mini_overrides(small_dataset)
    plan = subprocess.run([sys.executable, "-m", "foresight", "ladder", "plan", "configs/forecast-cpu.toml",
                           "--out", str(out), *overrides, "--set", "ladder.batch_multiple=2"],
                          capture_output=True, text=True, cwd=REPO)
    assert plan.returncode == 0, plan.stderr
    # a one-run ladder (its smallest run) keeps the test short
    plan_json = json.loads((out / "plan.json").read_text())
    plan_json["runs"] = plan_json["runs"][:1]
    (out / "plan.json").write_text(json.dumps(plan_json))
    name = plan_json["runs"][0]["name"]
    assert plan_json["runs"][0]["batch_size"] % 2 == 0

    odd = json.loads(json.dumps(plan_json))
    odd["runs"][0]["batch_size"] = 5
    (tmp_path / "odd").mkdir()
    (tmp_path / "odd" / "plan.json").write_text(json.dumps(odd))
    shutil.copytree(out / "configs", tmp_path / "odd" / "configs")
    refused = subprocess.run([sys.executable, "-m", "foresight", "ladder", "run", str(tmp_path / "odd"),
                              "--procs-per-run", "2"], capture_output=True, text=True, cwd=REPO)
    assert refused.returncode == 2
    assert f"does not divide the batch of {name} (batch 5)" in refused.stderr and "batch_multiple=2" in refused.stderr
    assert not (tmp_path / "odd" / "runs").exists()

    two = subprocess.run([sys.executable, "-m", "foresight", "ladder", "run", str(out), "--procs-per-run", "2",
                          "--jobs", "1"], capture_output=True, text=True, cwd=REPO)
    assert two.returncode == 0, two.stdout[-2000:] + two.stderr[-2000:]
    assert "each over 2 processes" in two.stdout
    split = json.loads((out / "runs" / name / "summary.json").read_text())
    assert split["world_size"] == 2
    one = subprocess.run([sys.executable, "-m", "foresight", "train", str(out / "configs" / f"{name}.toml"),
                          "--out", str(tmp_path / "one"), "--no-progress"], capture_output=True, text=True, cwd=REPO)
    assert one.returncode == 0, one.stderr[-2000:]
    single = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert single["world_size"] == 1 and single["steps"] == split["steps"]
    assert abs(single["final_val_loss"] - split["final_val_loss"]) < 1e-4


def test_ladder_plan_slurm_script_trains_a_run_and_bad_cluster_addresses_are_named(small_dataset, tmp_path):
    out = tmp_path / "plan"

    def cli(*args):
        return subprocess.run([sys.executable, "-m", "foresight", *map(str, args)], capture_output=True, text=True,
                              cwd=REPO)

    proc = cli("ladder", "plan", "configs/forecast-cpu.toml", "--out", out, "--slurm", *_mini_overrides(small_dataset))
    assert proc.returncode == 0, proc.stderr
    script = out / "slurm.sbatch"
    text = script.read_text()
    assert "#SBATCH --array=0-4" in text and "--resume" in text
    assert (out / "runs").is_dir()  # where its --output goes: Slurm creates no directories
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    # The array task runs as written (bash reads the #SBATCH lines as comments): task 0 trains the first run ...
    first = json.loads((out / "plan.json").read_text())["runs"][0]["name"]
    task = subprocess.run(["bash", str(script)], capture_output=True, text=True,
                          env={**os.environ, "SLURM_ARRAY_TASK_ID": "0", "SLURM_CPUS_PER_TASK": "1"})
    assert task.returncode == 0, task.stderr + (out / "runs" / first / "train.log").read_text()[-2000:]
    summary = json.loads((out / "runs" / first / "summary.json").read_text())
    assert summary["steps"] == json.loads((out / "plan.json").read_text())["runs"][0]["steps"]
    # a process count the runs' batches cannot be split over is refused, by `ladder run` and by `plan --slurm`
    status = cli("ladder", "run", out, "--procs-per-run", "3")
    assert status.returncode == 2 and "ladder.batch_multiple=3" in status.stderr
    refused = cli("ladder", "plan", "configs/forecast-cpu.toml", "--out", tmp_path / "p3", "--slurm",
                  "--procs-per-run", "3", *_mini_overrides(small_dataset))
    assert refused.returncode == 2 and "ladder.batch_multiple=3" in refused.stderr and "Traceback" not in refused.stderr

    import importlib.util

    if importlib.util.find_spec("ray") is not None:
        import socket

        with socket.socket() as s:  # a loopback port with nothing listening
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        bad = cli("ladder", "run", out, "--ray", f"127.0.0.1:{port}")
        assert bad.returncode == 2 and "no Ray cluster answers there" in bad.stderr and "Traceback" not in bad.stderr
