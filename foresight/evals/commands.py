"""`foresight eval`: run benchmark tasks on a model, list the tasks, or compare two results files."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from foresight.cli_args import int_in
from foresight.errors import ForesightError
from foresight.weights.commands import MODEL_HELP, add_weights_option


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "eval", help="evaluate a model on benchmarks (MMLU, TruthfulQA, HHH, Hindsight Neglect, bits per byte)",
        description="Run tasks on MODEL and write results.json (per-item records and summaries) plus a "
                    "reliability diagram per calibrated task next to it; print a table. Answers are cached per "
                    "model, so a re-run is instant and an interrupted run resumes. "
                    "`foresight eval --list` lists the tasks; `foresight eval --compare A.json B.json` prints "
                    "per-task differences.",
        epilog="example: foresight eval smollm2-135m-instruct --tasks mmlu,truthfulqa_mc,hindsight_neglect "
               "--limit 200")
    p.add_argument("model", metavar="MODEL", nargs="?",
                   help=MODEL_HELP)
    p.add_argument("--tasks", metavar="LIST", help="comma-separated task names (see --list)")
    p.add_argument("--shots", type=int_in(0, 1000), metavar="K",
                   help="few-shot examples per item (default: the task's own; tasks without examples run 0-shot)")
    p.add_argument("--limit", type=int_in(1, 10**9), metavar="N",
                   help="score at most N items per task (spread over subjects)")
    p.add_argument("--out", type=Path, metavar="FILE",
                   help="results file (default eval_results/<model>/results.json)")
    p.add_argument("--text", metavar="PATH", help="bits_per_byte: a text file, glob, or prepared dataset "
                   "directory (default: a training run's own corpus, else the prepared default corpus; the "
                   "validation split of either)")
    p.add_argument("--device", default=None, type=_device, help="cpu, cuda or cuda:N (default: cuda if available)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    add_weights_option(p)  # --weights float|int8 -> args.quantize
    p.add_argument("--batch-tokens", type=int_in(1, 2**24), default=None, metavar="N",
                   help="most tokens per forward pass, padding included (default 1024 on a CPU, 16384 on a GPU)")
    p.add_argument("--threads", type=int_in(0, 4096), default=0, metavar="N",
                   help="CPU threads (default: torch's choice)")
    p.add_argument("--no-cache", action="store_true", help="neither read nor write the answer cache")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--list", action="store_true", help="list the tasks and exit")
    p.add_argument("--compare", nargs=2, type=Path, metavar=("A.json", "B.json"),
                   help="print per-task differences between two results files and exit")
    p.set_defaults(func=_eval)


def _device(text: str) -> str:
    import re

    if not re.fullmatch(r"cpu|cuda(:[0-9]{1,3})?", text):
        raise argparse.ArgumentTypeError(f"must be cpu, cuda or cuda:N, not {text!r}")
    return text


def _check_out_file(out: Path | None) -> None:
    """--out names a file to write: refuse an empty name, a directory, or a path under a file, before any work."""
    if out is None:
        return
    if not str(out).strip() or str(out) == ".":
        raise ForesightError("--out names no file (empty, or the current directory): give the results file to "
                             "write, e.g. results.json")
    if out.is_dir():
        raise ForesightError(f"--out {out} is a directory: give the results file to write, e.g. {out / 'results.json'}")
    for parent in out.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ForesightError(f"--out {out} is under {parent}, which is a file")
            break


def _list() -> int:
    from foresight.evals.spec import all_tasks

    specs = all_tasks()
    width = max(len(s.name) for s in specs)
    for s in specs:
        shots = f", up to {s.fewshot.max_shots}-shot" if s.fewshot.max_shots else ""
        print(f"{s.name:<{width}}  {s.request}{shots}: {s.description}")
    return 0


def _run_validation_text(model: str) -> str | None:
    """For a training run: its own corpus (whose validation split it never trained on), if it is prepared."""
    from foresight.weights.load import resolve

    kind, path = resolve(model)
    if kind != "run":  # a post-training run's config.toml is an SFT/RM config, and its base has its own corpus
        return None
    from foresight.config import load_config
    from foresight.data.prepare import resolve_data_dir

    data = resolve_data_dir(load_config(path / "config.toml").data)
    return str(data) if (data / "manifest.json").is_file() else None


def _fetch_task_data(specs: list, cache: Path) -> None:
    """Download and unpack every pinned artifact the tasks read (a no-op once cached)."""
    from foresight.data.sources import ARTIFACTS, extract

    for name in dict.fromkeys(s.source.artifact for s in specs if s.source.artifact):
        try:
            extract(ARTIFACTS[name], cache)
        except ForesightError as e:
            tasks = ", ".join(s.name for s in specs if s.source.artifact == name)
            raise ForesightError(f"task {tasks}: its data cannot be had: {e}") from None


def _read_results(path: Path) -> dict:
    from foresight.evals.results import read_results

    try:
        return read_results(path)
    except UnicodeDecodeError:
        raise ForesightError(f"{path}: not a results.json written by `foresight eval` (not text)") from None


def _eval(args: argparse.Namespace) -> int:
    from foresight.evals.results import compare, format_summary

    if args.list:
        return _list()
    if args.compare:
        a, b = (_read_results(p) for p in args.compare)
        print(f"A = {args.compare[0]} ({a.get('model', {}).get('spec')})\nB = {args.compare[1]} "
              f"({b.get('model', {}).get('spec')})")
        print(compare(a, b))
        return 0
    if not args.model:
        raise ForesightError("give a MODEL to evaluate (or --list, or --compare A.json B.json)")
    if not args.tasks:
        raise ForesightError("give --tasks LIST (comma-separated; `foresight eval --list` shows them)")
    _check_out_file(args.out)

    from foresight.evals.spec import get_task

    specs = [get_task(n.strip()) for n in args.tasks.split(",") if n.strip()]  # unknown names fail here, early
    if not specs:
        raise ForesightError(f"--tasks {args.tasks!r} names no task (`foresight eval --list` shows them)")
    if args.text and any(s.source.loader == "text" for s in specs):
        from foresight.evals.loaders import check_text_path

        check_text_path(args.text)  # before the model loads
    if args.device and args.device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ForesightError(f"--device {args.device}: no CUDA device is available")

    import torch

    from foresight.data.prepare import default_root
    from foresight.evals.lm import EvalModel
    from foresight.evals.results import default_out, write_results
    from foresight.evals.runner import evaluate

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    model = EvalModel(args.model, device=device, dtype=args.dtype, use_cache=not args.no_cache,
                      batch_tokens=args.batch_tokens, quantize=args.quantize)  # checks MODEL; loads on first need
    try:
        # Every task's data first: one that cannot be had fails before any other task runs.
        _fetch_task_data(specs, default_root() / "cache")
        results = evaluate(model, specs, default_root() / "cache", args.shots, args.limit,
                           args.text or _run_validation_text(args.model), progress=not args.quiet)
    finally:
        model.close()
    out = write_results(results, args.out or default_out(args.model))
    print(format_summary(results))
    r = results["requests"]
    print(f"{sum(t['n'] for t in results['tasks'].values())} items in {results['seconds']:.1f}s "
          f"({r['computed']} requests computed, {r['cached']} from the cache); wrote {out}"
          + "".join(f", {out.parent / f}" for f in results["files"].values()), file=sys.stderr)
    return 0
