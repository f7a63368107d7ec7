"""DPO training: foresight's `train_dpo` against TRL's `DPOTrainer` on the same preference pairs.

Both start from the same float32 weights (SmolLM2-135M-Instruct by default: our loader's weights, and the Hugging
Face folder written from them), use the same model as their frozen reference (a second copy of the same weights,
its log-probabilities computed on the fly each step: TRL's `precompute_ref_log_probs=False`, its default), the
sigmoid loss with the same beta, and train on the same pairs in the same order with the same AdamW (lr, betas, eps,
weight decay), gradient clipping, constant learning rate without warm-up, batch, fp32 on the CPU, one process, the
same number of threads. Ours runs exactly as `foresight align dpo` does (`train_dpo`: both sides of a micro-batch
packed into rows of seq_len tokens, log-probabilities over the reply tokens only); TRL runs as its documentation
shows, with `bf16=False` and `gradient_checkpointing=False` (TRL turns both on by default).

Data: a seeded sample of `--pairs` pairs from `foresight align data`'s pairs_train.jsonl whose longer side fits in
seq_len tokens (the selection `bench/reward_model.py` makes). TRL gets each pair in its explicit-prompt text form:
prompt = the chat template's rendering of the messages with the generation prompt, chosen / rejected = the replies,
to which TRL appends the tokenizer's eos, <|im_end|>. Its tokenization is checked to give exactly our sequences
(prompt + reply + <|im_end|>, the reply starting where ours does); the script stops on any difference.

Printed: the first losses of both side by side (goal: the same to 1e-3), and throughput in pairs per second over
steps 2..S (step 1 is the warm-up), from the end of one optimizer step to the end of the next on TRL's side (a
callback) and the loop's own step time on ours (metrics.jsonl).

    flock /tmp/foresight-bench.lock .venv/bin/python bench/dpo_step.py [--pairs 64] [--seq 384] [--batch 8]
        [--beta 0.1] [--lr 5e-7] [--threads 2]

Needs the `compare` extra (trl) and the data built by `foresight align data`. Last line: `ratio: X` = our training
pairs per second / TRL's (steps 2..S).
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from reward_model import pair_throughput, select, step_order, trl_text  # noqa: E402
from sft_step import (StepLog, add_optimizer_args, check_optimizer_groups, drop_printer, export_hf,  # noqa: E402
                      free, logged, loop_step_seconds, our_train_config, quiet_hf, step_clock, trl_common_args)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import print_ratio  # noqa: E402


def run_ours(args, records: list[dict], work: Path, steps: int) -> dict:
    from foresight.align.config import AlignDataConfig, DPOConfig, DPOOptions
    from foresight.align.dpo import train_dpo

    path = work / "pairs_train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = DPOConfig(base=args.base, data=AlignDataConfig(train=str(path), max_examples=0),
                    train=our_train_config(args), dpo=DPOOptions(steps=steps, beta=args.beta))
    out = work / "ours"
    summary = train_dpo(cfg, out, progress=False)
    if summary["pairs"] != len(records):
        raise SystemExit("our run kept a different set of pairs than the bench selected")
    losses, seconds = loop_step_seconds(out)
    return {"losses": losses, "seconds": seconds, "steps": summary["steps"]}


def run_trl(args, records: list[dict], pairs: list, hf_dir: Path, work: Path, steps: int) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    log = StepLog()

    tok = AutoTokenizer.from_pretrained(hf_dir)
    model = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="sdpa")
    ref = AutoModelForCausalLM.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="sdpa")
    order = step_order(len(records), steps, args.batch, args.seed)
    dataset = Dataset.from_list([trl_text(tok, records[i]) for i in order])
    config = DPOConfig(**trl_common_args(args, work / "trl", steps), max_length=args.seq, beta=args.beta,
                       loss_type=["sigmoid"], precompute_ref_log_probs=False)
    trainer = logged(DPOTrainer, log)(model=model, ref_model=ref, args=config, train_dataset=dataset,
                                      processing_class=tok, callbacks=[step_clock(log)])
    drop_printer(trainer)
    prepared = trainer.train_dataset
    if len(prepared) != len(order):
        raise SystemExit(f"TRL kept {len(prepared)} of the {len(order)} pair slots")
    for k, i in enumerate(order):
        row, pair = prepared[k], pairs[i]
        if (len(row["prompt_ids"]) != pair.reply_start or row["prompt_ids"] + row["chosen_ids"] != pair.chosen
                or row["prompt_ids"] + row["rejected_ids"] != pair.rejected):
            raise SystemExit(f"{records[i]['id']}: TRL's tokens differ from ours")
    print(f"  TRL's tokenization = ours on all {len(order)} pair slots (prompt, chosen and rejected)")
    trainer.train()
    seconds = [float("nan")] + [b - a for a, b in zip(log.ends[:-1], log.ends[1:])]
    del trainer, model, ref
    free()
    return {"losses": log.losses, "seconds": seconds, "tokens": log.tokens, "computed": log.computed}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--data-dir", default="", help="folder with pairs_train.jsonl (default: the built)")
    parser.add_argument("--pairs", type=int, default=64, help="training pairs (one epoch)")
    parser.add_argument("--seq", type=int, default=384, help="longest side kept, in tokens")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--beta", type=float, default=0.1)
    add_optimizer_args(parser, lr=5e-7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-steps", type=int, default=5, help="first losses printed side by side")
    parser.add_argument("--work", default="", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from foresight.runtime import keep_freed_memory

    keep_freed_memory()
    quiet_hf()
    import transformers
    import trl

    from foresight.align.data import align_data_dir
    from foresight.weights.load import load_model

    steps = max(1, math.ceil(args.pairs / args.batch))
    if steps < 2:
        raise SystemExit("need at least 2 steps (step 1 is the warm-up)")
    data_dir = Path(args.data_dir) if args.data_dir else align_data_dir()
    with tempfile.TemporaryDirectory(prefix="bench-dpo-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        loaded = load_model(args.base)
        check_optimizer_groups(loaded.model)
        max_len = min(args.seq, loaded.model.cfg.max_seq_len)
        records, pairs = select(args, loaded.tokenizer, data_dir / "pairs_train.jsonl", args.pairs, max_len,
                                args.seed)
        hf_dir = export_hf(loaded, work)
        del loaded
        free()
        sides = [len(s) for p in pairs for s in (p.chosen, p.rejected)]
        print(f"{args.base}, float32 on CPU, {torch.get_num_threads()} threads; trl {trl.__version__}, transformers "
              f"{transformers.__version__}, torch {torch.__version__}")
        print(f"{len(pairs)} training pairs (sides: mean {np.mean(sides):.0f} tokens, max {max(sides)}); batch "
              f"{args.batch} pairs = {steps} steps; sigmoid loss, beta {args.beta}; AdamW lr {args.lr}, betas "
              f"({args.beta1}, {args.beta2}), eps {args.eps}, weight decay {args.weight_decay}, clip "
              f"{args.grad_clip}, constant; reference = the same weights, on the fly; setup {time.time() - t0:.0f} s")

        print("\nours (train_dpo):")
        ours = run_ours(args, records, work, steps)
        print("TRL (DPOTrainer):")
        theirs = run_trl(args, records, pairs, hf_dir, work, steps)

    k = min(args.check_steps, steps)
    print(f"\nloss, first {k} steps (same batches in the same order):")
    print("  step        ours         TRL    |diff|")
    worst = 0.0
    for s in range(k):
        diff = abs(ours["losses"][s] - theirs["losses"][s])
        worst = max(worst, diff)
        print(f"  {s + 1:>4}  {ours['losses'][s]:10.6f}  {theirs['losses'][s]:10.6f}  {diff:.2e}")
    print(f"  largest difference {worst:.2e} ({'within' if worst <= 1e-3 else 'NOT within'} 1e-3); mean loss over "
          f"all {steps} steps: ours {np.mean(ours['losses']):.4f}, TRL {np.mean(theirs['losses']):.4f}")

    rates = pair_throughput(ours, theirs, steps, args.batch, args.seq, "dpo")
    print_ratio(rates["ours"] / rates["TRL"])


if __name__ == "__main__":
    main()
