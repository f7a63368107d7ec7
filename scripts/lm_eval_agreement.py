"""MMLU agreement with lm-evaluation-harness on SmolLM2-135M-Instruct: the same items, prompts and weights.

Exports the built-in model as a Hugging Face folder (`foresight export`), writes the MMLU items we score as local
JSON with one lm-eval task per subject (prompt settings copied from lm-eval's own MMLU configs; see
foresight/evals/lm_eval_compare.py), runs lm-eval's "hf" model and our harness on them, and prints both accuracies,
their difference, and how many prompts and predictions are identical. Writes OUT/agreement.json. Exits 1 if the
accuracies differ by more than 1 point or any prompt differs.

    bash scripts/lm_eval_agreement.sh [--limit 570] [--shots 0]     # sets up .venv-compare, then runs this
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from foresight.runtime import keep_freed_memory, passive_thread_waits

passive_thread_waits()  # before torch loads (see foresight.runtime)
keep_freed_memory()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=570, help="MMLU items, spread over the 57 subjects "
                        "(default 570: 10 per subject; 0 = all 13,757)")
    parser.add_argument("--shots", type=int, default=0)
    parser.add_argument("--batch-size", type=int, default=8, help="lm-eval's batch size")
    parser.add_argument("--threads", type=int, default=0, help="CPU threads (default: torch's choice)")
    parser.add_argument("--out", type=Path, default=Path("build/lm_eval_agreement"))
    args = parser.parse_args()

    import torch

    from foresight.evals.lm_eval_compare import compare_mmlu
    from foresight.weights.export import export_model

    if args.threads:
        torch.set_num_threads(args.threads)
    hf = args.out / "smollm2-135m-instruct-hf"
    if not (hf / "config.json").is_file():
        export_model("smollm2-135m-instruct", hf, "hf", torch.float32)
    result = compare_mmlu(hf, args.out, args.limit or None, args.shots, args.batch_size)
    result["threads"] = torch.get_num_threads()
    (args.out / "agreement.json").write_text(json.dumps(result, indent=1))
    print(f"MMLU {result['shots']}-shot, {result['n']} items over {result['subjects']} subjects, SmolLM2-135M-Instruct "
          f"fp32 (the same exported weights on both sides)")
    print(f"  accuracy: ours {100 * result['acc_ours']:.2f}%, lm-eval 0.4.13 {100 * result['acc_lm_eval']:.2f}%, "
          f"difference {result['delta_points']:+.2f} points")
    print(f"  identical prompts {result['same_prompts']}/{result['n']}, identical predictions "
          f"{result['same_predictions']}/{result['n']}, largest log-likelihood difference "
          f"{result['max_abs_logprob_diff']:.1e}")
    print(f"  time: ours {result['seconds_ours']:.0f}s, lm-eval {result['seconds_lm_eval']:.0f}s "
          f"(batch {result['lm_eval_batch_size']}; lm-eval's includes building its tasks)")
    ok = abs(result["delta_points"]) <= 1 and result["same_prompts"] == result["n"]
    print("agreement: " + ("within 1 point" if ok else "NOT within 1 point / prompts differ"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
