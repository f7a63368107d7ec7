"""RLHF iteration time: foresight's `train_ppo` against TRL's RLOOTrainer, the same model, batch and lengths.

TRL 1.16 (the pinned peer) no longer ships a PPO trainer; its online trainers are RLOO and GRPO, and RLOO is the
nearest in shape: sample replies, score them with reward callables, a per-token KL to a frozen reference, clipped
policy-ratio updates over the rollouts for several epochs. PPO also trains a value head (one linear layer on the
shared body, negligible compute) where RLOO uses the other samples of the same prompt as the baseline.

One iteration, both sides: R replies of exactly T new tokens sampled at temperature 1 (TRL: R/2 prompts x 2
generations, the least RLOO takes; ours: R prompts), scored by the same reward callable (`refusal_rules`, the phrase
judge), log-probabilities of the policy and of the reference over every reply token, then E epochs of R/B
minibatches of B replies, one AdamW step each (the same lr, betas, eps, clipping; constant rate), fp32 on the CPU,
one process, the same threads. Every reply is exactly T tokens on both sides so neither gains from shorter replies:
TRL's generate gets min_new_tokens = T (the end token is masked until then), ours generates with no stop token (the
serving engine's `ignore_eos`; the bench sets it, `foresight align ppo` never does). Our side runs `train_ppo` as
`foresight align ppo` does, rollouts through the serving engine's continuous batching; TRL generates through
transformers' `generate` (its default path on one device).

Timed: seconds per iteration over iterations 2..I (the first is the warm-up), from the loop's own step times on our
side and from the end of one optimizer step to the end of the next on TRL's (a callback), E x R/B steps per
iteration; and the share of that spent generating rollouts (ours: the iteration's `rollout_seconds`; TRL: a timer
around its `_generate_single_turn`).

    flock /tmp/foresight-bench.lock .venv/bin/python bench/ppo_step.py [--iterations 3] [--rollouts 16]
        [--batch 8] [--epochs 2] [--tokens 64] [--kl 0.05] [--threads 2]

Needs the `compare` extra (trl). Last line: `ratio: X` = TRL's seconds per iteration / ours (iterations 2..I).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_step import (StepLog, add_optimizer_args, check_optimizer_groups, drop_printer, export_hf,  # noqa: E402
                      free, loop_step_seconds, our_train_config, quiet_hf, step_clock, trl_common_args)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import print_ratio  # noqa: E402


def bench_prompts(args) -> list[dict]:
    """A seeded draw of the built-in behaviour prompts (train split): disallowed requests and allowed risky ones."""
    from foresight.align.config import PPOPrompts
    from foresight.align.ppo import load_prompts

    prompts = load_prompts(PPOPrompts(), "train")
    order = np.random.default_rng(args.seed).permutation(len(prompts))
    return [{"messages": prompts[i].messages, "type": prompts[i].ptype} for i in order]


def run_ours(args, prompts: list[dict], work: Path) -> dict:
    from foresight.align.config import PPOConfig, PPOOptions, PPOPrompts
    from foresight.align.ppo import train_ppo
    from foresight.serve import engine

    path = work / "prompts.jsonl"
    path.write_text("".join(json.dumps(p) + "\n" for p in prompts))
    cfg = PPOConfig(base=args.base, prompts=PPOPrompts(source=str(path), probe=0),
                    rewards=[{"name": "refusal_rules", "weight": 1.0}], train=our_train_config(args),
                    ppo=PPOOptions(iterations=args.iterations, rollouts=args.rollouts, minibatch=args.batch,
                                   epochs=args.epochs, max_new_tokens=args.tokens, temperature=1.0,
                                   kl_coef=args.kl, no_end_penalty=0.0))
    sampling = engine.SamplingParams

    @dataclasses.dataclass(frozen=True)
    class IgnoreEnd(sampling):  # every reply exactly T tokens
        stop_token_ids: tuple[int, ...] | None = ()

    engine.SamplingParams = IgnoreEnd
    try:
        train_ppo(cfg, work / "ours", progress=False)
    finally:
        engine.SamplingParams = sampling
    _, seconds = loop_step_seconds(work / "ours")
    rows = [json.loads(line) for line in (work / "ours" / "metrics.jsonl").read_text().splitlines()]
    stats = [r for r in rows if "rollout_seconds" in r]
    if any(r["reply_tokens"] != args.tokens for r in stats):
        raise SystemExit(f"our replies are not all {args.tokens} tokens: {[r['reply_tokens'] for r in stats]}")
    return {"seconds": seconds, "rollout": [r["rollout_seconds"] for r in stats],
            "score": [r["score"] for r in stats]}


def run_trl(args, prompts: list[dict], hf_dir: Path, work: Path) -> dict:
    from datasets import Dataset
    from transformers import AutoTokenizer
    from trl import RLOOConfig, RLOOTrainer

    from foresight.align.rewards import refusal_rules

    def refusal_reward(prompts, completions, prompt_types, **kwargs):
        return refusal_rules([p[-1]["content"] for p in prompts], [c[0]["content"] for c in completions],
                             prompt_types=prompt_types)

    log, generation, lengths = StepLog(), [], []
    per_iteration = args.epochs * args.rollouts // args.batch

    class Timed(RLOOTrainer):
        def _generate_single_turn(self, prompt_ids, images, multimodal_fields):
            t0 = time.perf_counter()
            out = super()._generate_single_turn(prompt_ids, images, multimodal_fields)
            generation.append(time.perf_counter() - t0)
            lengths.extend(len(ids) for ids in out)
            return out

    tok = AutoTokenizer.from_pretrained(hf_dir)
    common = trl_common_args(args, work / "trl", args.iterations * per_iteration) | {"remove_unused_columns": False}
    config = RLOOConfig(**common, num_generations=2, steps_per_generation=args.rollouts // args.batch,
                        num_iterations=args.epochs, max_completion_length=args.tokens, temperature=1.0,
                        beta=args.kl, generation_kwargs={"min_new_tokens": args.tokens},
                        model_init_kwargs={"dtype": torch.float32, "attn_implementation": "sdpa"})
    dataset = Dataset.from_list([{"prompt": p["messages"], "prompt_types": p["type"]} for p in prompts])
    trainer = Timed(model=str(hf_dir), reward_funcs=[refusal_reward], args=config, train_dataset=dataset,
                    processing_class=tok, callbacks=[step_clock(log)])
    drop_printer(trainer)
    start = time.perf_counter()
    trainer.train()
    ends = [start] + log.ends
    seconds = [b - a for a, b in zip(ends[:-1], ends[1:])]
    if set(lengths) != {args.tokens}:
        raise SystemExit(f"TRL's replies are not all {args.tokens} tokens: {sorted(set(lengths))}")
    del trainer
    free()
    return {"seconds": seconds, "rollout": generation}


def per_iteration(res: dict, steps: int) -> tuple[list[float], list[float]]:
    """(seconds, rollout share) of each iteration."""
    secs = [sum(res["seconds"][i:i + steps]) for i in range(0, len(res["seconds"]), steps)]
    return secs, [g / s for g, s in zip(res["rollout"], secs)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--rollouts", type=int, default=16, help="replies per iteration (even)")
    parser.add_argument("--batch", type=int, default=8, help="replies per optimizer step")
    parser.add_argument("--epochs", type=int, default=2, help="passes over each iteration's replies")
    parser.add_argument("--tokens", type=int, default=64, help="new tokens per reply")
    parser.add_argument("--kl", type=float, default=0.05, help="KL coefficient (both: k1 per token)")
    add_optimizer_args(parser, lr=1e-6)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--work", default="", help="keep the runs here (default: a temporary folder)")
    args = parser.parse_args()
    if args.iterations < 2 or args.rollouts % 2 or args.rollouts % args.batch:
        raise SystemExit("need >= 2 iterations, an even number of rollouts, and rollouts a multiple of batch")
    args.seq = 512  # our [train] table's seq_len; PPO sizes its batches from the replies
    torch.set_num_threads(args.threads)
    from foresight.runtime import keep_freed_memory

    keep_freed_memory()
    quiet_hf()
    import transformers
    import trl

    from foresight.weights.load import load_model

    steps = args.epochs * args.rollouts // args.batch
    with tempfile.TemporaryDirectory(prefix="bench-ppo-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        loaded = load_model(args.base)
        check_optimizer_groups(loaded.model)
        hf_dir = export_hf(loaded, work)
        del loaded
        free()
        prompts = bench_prompts(args)
        print(f"{args.base}, float32 on CPU, {torch.get_num_threads()} threads; trl {trl.__version__}, transformers "
              f"{transformers.__version__}, torch {torch.__version__}")
        print(f"{args.iterations} iterations of {args.rollouts} replies x {args.tokens} new tokens, {args.epochs} "
              f"epochs of minibatches of {args.batch} = {steps} AdamW steps (lr {args.lr}) each; KL coef {args.kl} "
              f"to a frozen reference; reward: refusal_rules on {len(prompts)} behaviour prompts")

        print("\nours (train_ppo, rollouts through serve.engine):")
        ours = run_ours(args, prompts, work)
        print("TRL (RLOOTrainer, transformers generate):")
        theirs = run_trl(args, prompts, hf_dir, work)

    rows = {}
    for name, res in (("ours", ours), ("TRL", theirs)):
        secs, share = per_iteration(res, steps)
        rows[name] = (float(np.mean(secs[1:])), float(np.mean(share[1:])),
                      float(np.mean(res["rollout"][1:])))
        print(f"  {name:5s} per iteration: {', '.join(f'{s:.1f}' for s in secs)} s; rollouts "
              f"{', '.join(f'{100 * x:.0f}%' for x in share)}")
    print(f"\n{'':5s} {'s/iteration':>12s} {'rollout s':>10s} {'rollout share':>14s}  (iterations 2..{args.iterations})")
    for name, (sec, share, gen) in rows.items():
        print(f"{name:5s} {sec:12.2f} {gen:10.2f} {100 * share:13.0f}%")
    print(f"rollouts alone: TRL / ours = {rows['TRL'][2] / rows['ours'][2]:.2f}; the rest of the iteration: "
          f"{(rows['TRL'][0] - rows['TRL'][2]) / (rows['ours'][0] - rows['ours'][2]):.2f}")
    print_ratio(rows["TRL"][0] / rows["ours"][0])


if __name__ == "__main__":
    main()
