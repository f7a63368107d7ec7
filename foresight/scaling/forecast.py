"""`foresight forecast`: plan -> ladder -> fit -> register -> target run -> verdict, resumable at every stage.

Each stage leaves a file in the forecast directory, written atomically; a re-run skips every stage whose file is
there. The prediction is registered in the ledger before the target run writes its first metric, and the fit uses
only the ladder's final losses — never a partial result of the target.

With a [forecast.capabilities] table, three stages join them (foresight/scaling/capabilities.py): after the loss
fit, the ladder models' pass rates on held-out exercises are measured and −E[log pass_rate] = α·C^(−k) is fitted;
that prediction is registered next to the loss prediction, before the target starts; after the target run, its
own pass rates are measured, and the verdict compares them. Files: DIR/capabilities/ (pass rates per model, fit,
registered prediction) and DIR/capabilities_vs_compute.png.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

from foresight.config import dump_config
from foresight.files import sha256_file
from foresight.errors import ForesightError
from foresight.scaling.ladder import ForecastConfig, ladder_kind, load_plan, plan_ladder, run_ladder, write_plan
from foresight.files import atomic_write_text

LEVEL = 0.9


def _say(msg: str) -> None:
    print(msg, flush=True)


def _write_json(path: Path, obj) -> None:
    atomic_write_text(path, json.dumps(obj, indent=1) + "\n")


class _Stages:
    """Prints "[i/N] name", numbering the stages this forecast has (six, or nine with capabilities), and keeps the
    job's wall time across resumes in DIR/elapsed.json: the seconds of earlier invocations up to their last finished
    stage, plus this one's. (Time spent in a stage that was interrupted is not counted: it is redone.)"""

    def __init__(self, out: Path, capabilities: bool, t0: float):
        self.total = 9 if capabilities else 6
        self.n = 0
        self.path = out / "elapsed.json"
        earlier = json.loads(self.path.read_text()) if self.path.is_file() else {}
        self.before = float(earlier.get("seconds", 0.0))
        self.invocations = int(earlier.get("invocations", 0)) + 1
        self.t0 = t0

    def seconds(self) -> float:
        return self.before + time.time() - self.t0

    def save(self) -> None:
        _write_json(self.path, {"seconds": self.seconds(), "invocations": self.invocations})

    def __call__(self, name: str, done: bool) -> None:
        self.save()
        self.n += 1
        _say(f"[{self.n}/{self.total}] {name}" + (" (done, skipped)" if done else ""))


def resolve_vocab(fc: ForecastConfig) -> None:
    """Fill the target's `vocab_size = 0` ("from the tokenizer") with the prepared corpus's vocabulary size, so that
    everything computed from the target (its compute, the plan's extrapolation) counts the output head. The corpus
    is read even when the size is given: a corpus that was never prepared is named here, before any training.

    An image-text target has no prepared corpus: its tokenizer is learned from the scenes' texts, and the plan
    measures its vocabulary then (image_text.conversation_stats)."""
    if fc.modality != "text":
        return
    from foresight.data.shards import read_manifest
    from foresight.data.prepare import resolve_data_dir

    vocab = read_manifest(resolve_data_dir(fc.target.data))["tokenizer"]["vocab_size"]
    if fc.target.model.vocab_size == 0:
        fc.target.model.vocab_size = vocab


def finished_forecast(folder: Path) -> dict:
    """FOLDER/forecast.json of a forecast whose target has finished (it has an actual_loss); a clear error if not."""
    path = Path(folder) / "forecast.json"
    if not path.is_file():
        raise ForesightError(f"{path} does not exist (expected the folder of a finished `foresight forecast`)")
    report = json.loads(path.read_text())
    if report.get("actual_loss") is None:
        raise ForesightError(f"{path}: the target run has not finished (no actual_loss)")
    return report


def _check_config(out: Path, fc: ForecastConfig) -> None:
    from foresight.scaling.ladder import dump_forecast_config

    saved = out / "forecast_config.toml"
    text = dump_forecast_config(fc)
    if saved.is_file():
        if saved.read_text() != text:
            raise ForesightError(f"{out} holds a forecast made with a different config ({saved}); "
                                 f"choose another --out, or delete {out} to start over")
    else:
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(saved, text)


def _fit_ladder(summaries: list[dict], c_target: float, fit_config) -> dict:
    """Fit the configured law ([fit]) to the ladder's final losses and predict the target, with the curve and band
    on a grid for the figure (so plotting needs no re-fit). With [fit] top_runs = K only the K largest runs are
    fitted, and the scatter of all of them (`ladder_noise`) sets a floor under the interval."""
    import numpy as np

    from foresight.scaling.fit import fit_top_runs

    flops = [s["flops"] for s in summaries]
    losses = [s["final_val_loss"] for s in summaries]
    result = fit_top_runs(fit_config.law, flops, losses, fit_config.top_runs)
    x, y = result.inputs[:, 0].tolist(), result.y.tolist()
    result.check_in_domain(c_target)
    low, high = result.interval(c_target, level=LEVEL)
    fit = {
        "law": result.law.formula,
        "params": result.params,
        "n_points": len(x),
        "x": x,
        "y": y,
        "ladder_x": flops,  # every run, fitted or not, for the figure
        "ladder_y": losses,
        "noise_floor": result.noise_floor,
        "prediction": {"x": c_target, "y": float(result.predict(c_target)), "low": float(low), "high": float(high),
                       "level": LEVEL},
    }
    grid = np.logspace(np.log10(min(x)) - 0.2, np.log10(c_target) + 0.2, 60)
    low, high = result.interval(grid, level=LEVEL)
    fit["curve"] = {"x": grid.tolist(), "y": result.predict(grid).tolist(), "low": low.tolist(),
                    "high": high.tolist()}
    return fit


def loss_entry(fit: dict, target_cfg_path: Path, ladder_summaries: dict[str, Path], name: str | None = None) -> dict:
    """The ledger entry of the loss prediction in fit.json (`_fit_ladder`'s dict); `name` names what the loss is
    (an image-text target's "held-out image-text loss"; a text forecast's prediction has no name)."""
    from foresight.scaling.ledger import make_entry

    p = fit["prediction"]
    named = {"name": name} if name else {}
    return make_entry("loss", fit["law"], [{**named, **p, "params": fit["params"]}],
                      ladder_results={name: sha256_file(path) for name, path in ladder_summaries.items()},
                      target_config_sha256=sha256_file(target_cfg_path), target_compute=p["x"])


def capabilities_entry(caps_fit: dict, target_cfg_path: Path, pass_rate_files: list[Path]) -> dict:
    """The ledger entry of the capability prediction: one prediction per fitted bucket (`fit_capabilities`)."""
    from foresight.scaling.ledger import make_entry

    predictions = [{"name": b["bucket"], "task_ids": b["task_ids"], "params": b["params"], **b["prediction"]}
                   for b in caps_fit["buckets"] if "prediction" in b]
    return make_entry("capabilities", caps_fit["law"], predictions,
                      ladder_results={p.stem: sha256_file(p) for p in pass_rate_files},
                      target_config_sha256=sha256_file(target_cfg_path), target_compute=caps_fit["target_compute"])


def forecast(config_path: Path, out: Path, overrides: list[str] = (), jobs: int = 0,
             procs_per_run: int = 1, sign_key: Path | None = None, ray: str | None = None) -> dict:
    """Run (or resume) the forecast in `out`; `sign_key` (an ed25519 key file) signs the ledger entries it adds;
    `ray` (a Ray cluster's address) runs the ladder's runs and the pass-rate measurements as Ray tasks (the
    target trains here)."""
    from foresight.scaling.ladder import load_forecast_config
    from foresight.scaling.ledger import load_signing_key

    t0 = time.time()
    key = load_signing_key(sign_key) if sign_key else None  # a bad key is named now, not after the ladder trains
    fc = load_forecast_config(config_path, overrides)
    out = Path(out)
    resolve_vocab(fc)
    _check_config(out, fc)
    kind = ladder_kind(fc.modality)
    target_dir = out / "target"
    target_cfg_path = out / "target_config.toml"
    cc = fc.capabilities
    if cc is not None:
        _check_corpus_has_exercises(fc)
    stage = _Stages(out, cc is not None, t0)

    # Plan.
    stage("plan the ladder", (out / "plan.json").is_file())
    if not (out / "plan.json").is_file():
        plan = write_plan(plan_ladder(fc), out, fc.target)
        atomic_write_text(target_cfg_path, dump_config(fc.target))
        for r in plan["runs"]:
            _say(f"  {r['name']}: {r['compute']:.2e} FLOPs, {r['params']:,} params "
                 f"({r['non_embedding_params']:,} non-embedding), {r['tokens']:,} tokens, batch {r['batch_size']}, "
                 f"{r['steps']} steps")
        what = "" if fc.modality == "text" else f" ({fc.modality})"
        _say(f"  target{what}: {plan['target_compute']:.2e} FLOPs = {plan['extrapolation']:.0f}x the largest "
             f"ladder run")
    plan = load_plan(out)
    c_target = plan["target_compute"]  # computed once, when planning (an image-text target's needs its data)

    # Ladder.
    ladder_done = all((out / "runs" / r["name"] / "summary.json").is_file() for r in plan["runs"])
    stage("train the ladder", ladder_done)
    summaries = run_ladder(out, jobs=jobs, say=_say, procs_per_run=procs_per_run, ray=ray)

    # Fit.
    from foresight.scaling.laws import get_law

    fitted = f"the top {fc.fit.top_runs} runs" if fc.fit.top_runs else "the ladder"
    stage(f"fit {get_law(fc.fit.law).formula} to {fitted}", (out / "fit.json").is_file())
    if not (out / "fit.json").is_file():
        _write_json(out / "fit.json", _fit_ladder(summaries, c_target, fc.fit))
    fit = json.loads((out / "fit.json").read_text())
    p = fit["prediction"]
    _say(f"  predicted {kind.loss_name} at {c_target:.2e} FLOPs: {p['y']:.4f} "
         f"(90% interval {p['low']:.4f} - {p['high']:.4f})")

    # Capabilities: the ladder's pass rates and the fit (before anything is registered or the target starts).
    if cc is not None:
        caps_fit = _capabilities_before_target(out, fc, plan, summaries, c_target, stage, jobs, ray)

    # Register the prediction(s) before the target run starts.
    registered_caps = out / "capabilities" / "prediction.json"
    stage("register the prediction in the ledger", (out / "prediction.json").is_file() and
          (cc is None or registered_caps.is_file()))
    if not (out / "prediction.json").is_file():
        from foresight.scaling.ledger import register

        summaries_paths = {r["name"]: out / "runs" / r["name"] / "summary.json" for r in plan["runs"]}
        registered = register(out / "ledger.jsonl",
                              loss_entry(fit, target_cfg_path, summaries_paths, kind.prediction_name),
                              target_run_dir=target_dir, signing_key=key)
        _write_json(out / "prediction.json", registered)
        _say(f"  registered as entry {registered['index']} in {out / 'ledger.jsonl'}")
    # Read back as written: a directory from before format 2 holds an older shape, passed on unchanged.
    registered = json.loads((out / "prediction.json").read_text())
    if cc is not None and not registered_caps.is_file():
        _register_capabilities(out, caps_fit, target_cfg_path, target_dir, key)
    head = _ledger_head(registered, registered_caps if cc is not None else None)
    _say(f"  keep this head to detect later edits: {head} "
         f"(`foresight ledger verify {out / 'ledger.jsonl'} --expect {head}`)")

    # The target run.
    target_done = (target_dir / "summary.json").is_file()
    stage(f"train the target ({c_target:.2e} FLOPs)", target_done)
    if not target_done:
        kind.train_run(target_cfg_path, target_dir)
    actual = json.loads((target_dir / "summary.json").read_text())
    caps_result = _capabilities_after_target(out, fc, caps_fit, stage, jobs, ray) if cc is not None else None

    # Verdict, figure, report.
    stage("verdict and report", False)
    result = {
        "modality": fc.modality,
        "predicted_loss": p["y"],
        "interval": [p["low"], p["high"]],
        "interval_level": p["level"],
        "actual_loss": actual["final_val_loss"],
        "relative_error": (p["y"] - actual["final_val_loss"]) / actual["final_val_loss"],
        "inside_interval": p["low"] <= actual["final_val_loss"] <= p["high"],
        "target_compute": c_target,
        "extrapolation": c_target / max(s["flops"] for s in summaries),
        "ladder": [{"name": r["name"], "compute": s["flops"], "params": s["params"],
                    "non_embedding_params": s["non_embedding_params"], "tokens": s["tokens"],
                    "final_loss": s["final_val_loss"], "wall_seconds": s["wall_seconds"]}
                   for r, s in zip(plan["runs"], summaries)],
        "target": {"params": actual["params"], "non_embedding_params": actual["non_embedding_params"],
                   "tokens": actual["tokens"], "wall_seconds": actual["wall_seconds"]},
        "fit": {"law": fit["law"], "params": fit["params"]},
        "ledger_entry": registered,
        "ledger_head": head,
        "seconds": stage.seconds(),  # the whole job's wall time, summed over resumed invocations
        "invocations": stage.invocations,
    }
    if caps_result is not None:
        result["capabilities"] = caps_result
    _write_json(out / "forecast.json", result)
    stage.save()
    from foresight.scaling.report import write_figure, write_report

    write_figure(out / "loss_vs_compute.png", fit, result)
    if caps_result is not None:
        from foresight.scaling.capabilities import write_capability_figure, write_hindsight_figure

        if caps_result.get("buckets"):
            write_capability_figure(out / "capabilities_vs_compute.png", caps_fit, caps_result["buckets"])
        write_hindsight_figure(out / "hindsight_vs_compute.png", caps_result["hindsight_neglect"], c_target)
    write_report(out / "report.html", fit, result, out)
    what = "" if fc.modality == "text" else f"{kind.loss_name}: "
    _say(f"{what}predicted {result['predicted_loss']:.4f} [{p['low']:.4f}, {p['high']:.4f}], actual "
         f"{result['actual_loss']:.4f}: error {100 * result['relative_error']:+.2f}% at "
         f"{result['extrapolation']:.0f}x extrapolation; "
         f"{'inside' if result['inside_interval'] else 'OUTSIDE'} the 90% interval")
    if caps_result is not None:
        _say_capabilities(caps_result)
    figures = [out / "loss_vs_compute.png"] + [p for p in (out / "capabilities_vs_compute.png",
                                                          out / "hindsight_vs_compute.png") if p.is_file()]
    _say(f"wrote {out / 'forecast.json'}, {', '.join(map(str, figures))}, {out / 'report.html'}")
    return result


# ----- capabilities ([forecast.capabilities]) --------------------------------------------------------------------------


def _check_corpus_has_exercises(fc: ForecastConfig) -> None:
    """A capability forecast on a corpus without the training exercises would measure nothing: refuse it early."""
    from foresight.data.shards import read_manifest
    from foresight.data.prepare import resolve_data_dir

    manifest = read_manifest(resolve_data_dir(fc.target.data))
    named = manifest.get("request", {}).get("corpus")
    if named is not None and "exercises" not in manifest.get("documents_by_source", {}):
        raise ForesightError(f"[forecast.capabilities] needs a corpus with the training exercises, e.g. "
                             f"target.data.corpus = \"default+exercises\"; {named!r} has none (the models would "
                             f"never have seen an exercise)")


def _capabilities_before_target(out: Path, fc: ForecastConfig, plan: dict, summaries: list[dict], c_target: float,
                                stage, jobs: int, ray: str | None = None) -> dict:
    """Measure the ladder's pass rates and fit the capability law; returns the fit (or {"error": why})."""
    from foresight.scaling.capabilities import fit_capabilities, measure_models, samples_for

    cc = fc.capabilities
    caps = out / "capabilities"
    names = [r["name"] for r in plan["runs"]]
    largest = max(r["compute"] for r in plan["runs"])
    samples = {r["name"]: samples_for(cc, r["compute"], largest) for r in plan["runs"]}
    done = all((caps / "ladder" / f"{n}.json").is_file() for n in names)
    drawn = f"{cc.samples}" if len(set(samples.values())) == 1 else \
        f"{samples[names[0]]} (smallest run) to {samples[names[-1]]}"
    stage(f"measure the ladder's pass rates ({len(cc.levels) * cc.problems_per_level} held-out exercises x "
          f"{drawn} samples)", done)
    measured = measure_models([(n, out / "runs" / n) for n in names], caps / "ladder", cc, jobs, _say, samples,
                              ray=ray)
    for m, s in zip(measured, summaries):
        m["compute"] = s["flops"]

    stage("fit -E[log pass_rate] = alpha*C^-k per difficulty level", (caps / "fit.json").is_file())
    if not (caps / "fit.json").is_file():
        try:
            caps_fit = fit_capabilities(measured, c_target)
        except ForesightError as e:
            # The loss forecast goes on: a capability that the ladder does not show is a finding, not a crash.
            caps_fit = {"error": str(e)}
        _write_json(caps / "fit.json", caps_fit)
    caps_fit = json.loads((caps / "fit.json").read_text())
    if "error" in caps_fit:
        _say(f"  no capability forecast: {caps_fit['error']}")
    for b in caps_fit.get("buckets", []):
        if "prediction" in b:
            p = b["prediction"]
            _say(f"  {b['bucket']}: {len(b['task_ids'])} of {b['problems']} problems solved by every ladder model; "
                 f"alpha = {b['params']['alpha']:.4g}, k = {b['params']['k']:.4f}; predicted -E[log pass_rate] "
                 f"{p['y']:.3f} ({p['low']:.3f} - {p['high']:.3f})")
        else:
            _say(f"  {b['bucket']}: {b['skipped']}")
    return caps_fit


def _register_capabilities(out: Path, caps_fit: dict, target_cfg_path: Path, target_dir: Path, key) -> None:
    from foresight.scaling.ledger import register

    caps = out / "capabilities"
    if "error" in caps_fit:
        _write_json(caps / "prediction.json", {"error": caps_fit["error"]})  # nothing to register
        return
    entry = capabilities_entry(caps_fit, target_cfg_path, sorted((caps / "ladder").glob("*.json")))
    registered = register(out / "ledger.jsonl", entry, target_run_dir=target_dir, signing_key=key)
    _write_json(caps / "prediction.json", registered)
    _say(f"  capability prediction registered as entry {registered['index']}")


def _ledger_head(loss_record: dict, caps_prediction: Path | None) -> str:
    """The sha256 of the last entry this forecast registered (the capability entry comes after the loss entry),
    from the records it kept, so a resumed forecast prints it without re-reading the ledger."""
    if caps_prediction is not None:
        caps_record = json.loads(caps_prediction.read_text())
        if "sha256" in caps_record:  # not {"error": ...}: nothing was registered
            return caps_record["sha256"]
    return loss_record["sha256"]


def _capabilities_after_target(out: Path, fc: ForecastConfig, caps_fit: dict, stage, jobs: int,
                               ray: str | None = None) -> dict:
    """Measure the target's pass rates and compare them with the registered prediction."""
    from foresight.scaling.capabilities import judge_capabilities, measure_models

    cc = fc.capabilities
    caps = out / "capabilities"
    names = [p.stem for p in sorted((caps / "ladder").glob("*.json"))] + ["target"]
    hindsight_files = [caps / "hindsight" / f"{n}.json" for n in names]
    stage("measure the target's pass rates, and every model's Hindsight Neglect accuracy",
          (caps / "target" / "target.json").is_file() and all(p.is_file() for p in hindsight_files))
    (target,) = measure_models([("target", out / "target")], caps / "target", cc, jobs, _say, ray=ray)
    hindsight = _hindsight(out, names, hindsight_files)
    registered = json.loads((caps / "prediction.json").read_text())
    ladder = [json.loads(p.read_text()) for p in sorted((caps / "ladder").glob("*.json"))]
    result = {"problems": len(target["problems"]), "samples": cc.samples, "temperature": cc.temperature,
              "levels": cc.levels, "target_pass_rates": _mean_pass_rates(target), "hindsight_neglect": hindsight,
              "ladder_pass_rates": {m["model"]: _mean_pass_rates(m) for m in ladder},
              "ladder_samples": {m["model"]: m["samples"] for m in ladder},
              # time spent sampling and checking (the ladder's models ran `jobs` at a time)
              "measure_seconds": {"ladder": sum(m["seconds"] for m in ladder), "target": target["seconds"]}}
    if "error" in caps_fit:
        return {**result, "error": caps_fit["error"]}
    return {**result, "law": caps_fit["law"], "extrapolation": caps_fit["extrapolation"],
            "buckets": judge_capabilities(caps_fit, target),
            "fits": {b["bucket"]: b.get("params", b.get("skipped")) for b in caps_fit["buckets"]},
            "ledger_entry": registered}


def _hindsight(out: Path, names: list[str], files: list[Path]) -> list[dict]:
    """Hindsight Neglect accuracy of each ladder model and the target (the report's Figure 3): measured, not
    forecast. One file per model, so a re-run skips the ones done."""
    from foresight.scaling.capabilities import measure_hindsight

    rows = []
    for name, path in zip(names, files):
        run = out / ("target" if name == "target" else f"runs/{name}")
        if not path.is_file():
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_json(path, measure_hindsight(run, path.parent))
            acc = json.loads(path.read_text())
            _say(f"  {name}: Hindsight Neglect accuracy {100 * acc['acc']:.1f}% ± {100 * acc['acc_stderr']:.1f} "
                 f"({acc['n']} items, {acc['seconds']:.0f}s)")
        flops = json.loads((run / "summary.json").read_text())["flops"]
        rows.append({"model": name, "compute": flops, **json.loads(path.read_text())})
    return rows


def _mean_pass_rates(measured: dict) -> dict:
    by_level: dict[str, list[float]] = {}
    for r in measured["problems"]:
        by_level.setdefault(f"level {r['level']}", []).append(r["c"] / r["n"])
    return {k: sum(v) / len(v) for k, v in sorted(by_level.items())}


def _say_capabilities(caps: dict) -> None:
    if "error" in caps:
        _say(f"capabilities: no forecast ({caps['error']})")
        return
    for row in caps["buckets"]:
        _say(f"capabilities, {row['bucket']} ({row['problems']} problems): -E[log pass_rate] predicted "
             f"{row['predicted']:.3f} [{row['interval'][0]:.3f}, {row['interval'][1]:.3f}] (pass rate "
             f"{100 * row['predicted_pass_rate']:.1f}%), actual {row['actual'] + 0.0:.3f} "
             f"({100 * row['actual_pass_rate']:.1f}%): error {row['error']:+.3f} nats, "
             f"{'inside' if row['inside_interval'] else 'OUTSIDE'} the 90% interval")
