"""MMLU throughput (items/s) on SmolLM2-135M-Instruct: our harness's model side against lm-evaluation-harness's.

The same MMLU items (the first --items scored questions of each of the first --subjects subjects), the same prompts
(lm-eval's MMLU configs over our items, written by foresight.evals.lm_eval_compare), the same float32 weights (the
Hugging Face folder `foresight export` writes, read by both), CPU. What is timed on each side is the scoring of
every item's four choices, given the item's requests: tokenization, batching, forward passes and log-likelihoods
(our EvalModel.loglikelihood with the answer cache off; lm-eval's HFLM.loglikelihood on the Instances its own
task code builds). Loading the model and building tasks are outside the timings. Both sides' answers are checked
to agree (same predicted letter for every item).

Needs lm-eval (pip install -e '.[compare]'; scripts/lm_eval_agreement.sh sets up .venv-compare with it):

    .venv-compare/bin/python bench/eval_mmlu.py [--shots 0,5] [--subjects 6] [--items 8] [--threads 2]

Prints one line per shot count; the last line, `ratio: X`, is ours / lm-eval in items/s for the last --shots value
(default 5: MMLU's standard setting, the one the GPT-4 report gives).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from foresight.runtime import keep_freed_memory, passive_thread_waits

# What the foresight command does at start-up, for both sides alike: idle OpenMP threads sleep (less lost to a busy
# neighbour) and freed activation buffers stay in the heap (foresight.runtime).
passive_thread_waits()
keep_freed_memory()
import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_ratio, time_interleaved  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shots", default="0,5", help="comma-separated shot counts (default 0,5)")
    parser.add_argument("--subjects", type=int, default=6)
    parser.add_argument("--items", type=int, default=8, help="scored items per subject")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lm-eval-batch", type=int, default=8, help="lm-eval's batch size (default 8)")
    parser.add_argument("--hf", type=Path, default=None, help="the exported model folder (default: export one)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    from foresight.data.prepare import default_root
    from foresight.evals.lm import EvalModel, Loglikelihood
    from foresight.evals.lm_eval_compare import lm_eval_instances, make_lm, write_mmlu_tasks
    from foresight.evals.loaders import load_items
    from foresight.evals.runner import build_context, split_pool
    from foresight.evals.spec import get_task
    from foresight.weights.export import export_model

    work = Path(tempfile.mkdtemp(prefix="eval_mmlu_bench_"))
    hf = args.hf or export_model("smollm2-135m-instruct", work / "hf", "hf", torch.float32)
    spec = get_task("mmlu")
    pool, scored = split_pool(spec, load_items("mmlu", default_root() / "cache", {}, spec.path))
    subjects = sorted({it["subject"] for it in scored})[: args.subjects]
    items = [it for s in subjects for it in [x for x in scored if x["subject"] == s][: args.items]]
    names = write_mmlu_tasks(items, pool, work / "tasks")

    ours = EvalModel(str(hf), use_cache=False)
    ours.loaded  # load now, outside the timings
    theirs = make_lm(hf, batch_size=args.lm_eval_batch)
    rows = []
    for shots in [int(s) for s in args.shots.split(",")]:
        requests = []
        for it in items:
            context, shared = build_context(spec, it, pool[it["subject"]][:shots])
            requests += [Loglikelihood(context, " " + c, shared) for c in "ABCD"]
        instances = lm_eval_instances(work / "tasks", names, shots)
        contexts = sorted({i.arguments[0] for i in instances})
        same_prompts = contexts == sorted({r.context for r in requests})

        def run_ours():
            return ours.loglikelihood(requests)

        def run_theirs():
            return theirs.loglikelihood(instances, disable_tqdm=True)

        a, b = run_ours(), run_theirs()
        pred = lambda lls: [max(range(4), key=lambda j: lls[4 * i + j][0]) for i in range(len(lls) // 4)]
        by_context = {}
        for inst, ll in zip(instances, b):
            by_context.setdefault(inst.arguments[0], {})[inst.arguments[1]] = ll
        b_ours_order = [by_context[r.context][r.continuation] for r in requests]
        agree = sum(x == y for x, y in zip(pred(a), pred(b_ours_order)))
        seconds = time_interleaved({"ours": run_ours, "lm-eval": run_theirs}, repeats=args.repeats, warmup=0)
        ips = {k: len(items) / median(v) for k, v in seconds.items()}
        rows.append((shots, ips["ours"], ips["lm-eval"], agree, same_prompts))

    print(f"SmolLM2-135M-Instruct fp32, cpu, {args.threads} threads; {len(items)} MMLU items ({len(subjects)} "
          f"subjects x {args.items}); lm-eval 0.4.13 batch {args.lm_eval_batch}; median of {args.repeats}")
    print(f"{'shots':>5}  {'ours items/s':>12}  {'lm-eval items/s':>15}  {'ratio':>5}  same prompts  same answers")
    for shots, a, b, agree, same in rows:
        print(f"{shots:>5}  {a:>12.2f}  {b:>15.2f}  {a / b:>5.2f}  {'yes' if same else 'NO':>12}  "
              f"{agree}/{len(items)}")
    print_ratio(rows[-1][1] / rows[-1][2])


if __name__ == "__main__":
    main()
