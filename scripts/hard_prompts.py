"""Keep the PPO prompts the starting model still gets wrong: a prompt file with headroom for the reward.

    python scripts/hard_prompts.py CONFIG.toml --samples K --out PROMPTS.jsonl [--source SOURCE]
        [--keep-solved N | --keep-solved TYPE=N,TYPE=N]
        [--validation-share F] [--limit N]

Samples K replies to every training prompt of a PPO config (`prompts.source`, or --source, e.g.
"behaviour_rl") from the config's `base` model, through the same engine, temperature, token budget and reward mix
PPO would use, and writes the prompts where at least one sample scored below `--threshold` of the mix (a refusal
of an allowed request, an answer to a disallowed one), plus `--keep-solved` prompts of each type (or a count per
type) that every sample got right (so the policy still sees what it already does well), as a `prompts.source` JSONL
file with each prompt's sampled scores. With --validation-share F, a seeded share F of each group (type x
failing/solved) goes to PROMPTS.val.jsonl instead: prompts PPO never trains on, for `prompts.probe_source` and `ppo.keep_best`
(picking the iteration on the evals' held-out prompts would be choosing on the test set). Why: on prompts the
starting model already answers as the rubric wants, the reward is near its ceiling and PPO's updates carry no
signal (docs/align-rl.md); filtering prompts by the policy's own success rate is what dynamic sampling in
GRPO-style trainers does online.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("config", type=Path)
    p.add_argument("--samples", type=int, default=2, help="replies sampled per prompt")
    p.add_argument("--threshold", type=float, default=0.0, help="a reply scoring below this failed")
    p.add_argument("--keep-solved", type=keep_solved_counts, default={}, metavar="N | TYPE=N,...",
                   help="prompts with no failed sample to keep: N of each type, or a count per type "
                        "(allowed=40,disallowed=60); the types' share of the file sets where PPO lands between "
                        "refusing too little and too much (docs/align-rl.md)")
    p.add_argument("--validation-share", type=float, default=0.0,
                   help="share of each group written to OUT.val.jsonl instead of OUT (0: none)")
    p.add_argument("--limit", type=int, default=0, help="only the first N prompts (0: all)")
    p.add_argument("--batch", type=int, default=24)
    p.add_argument("--source", default=None, help="the prompts to filter (default: the config's prompts.source)")
    p.add_argument("--out", type=Path, required=True)
    args = p.parse_args()
    if not 0 <= args.validation_share < 1:
        raise SystemExit(f"--validation-share must be in [0, 1), not {args.validation_share}")
    import numpy as np
    import torch

    from foresight.align import run as align_run
    from foresight.align.config import PPOConfig
    from foresight.align.ppo import generate, load_prompts, reward_mix
    from foresight.config import load_config

    cfg = load_config(args.config, PPOConfig,
                      overrides=[f"prompts.source={json.dumps(args.source)}"] if args.source else [])
    opts = cfg.ppo
    device = torch.device("cpu")
    loaded = align_run.load_base(cfg.base, device)
    lm, tokenizer = loaded.model.eval(), loaded.tokenizer
    rewards = reward_mix(cfg, lm, tokenizer, device)
    prompts = load_prompts(cfg.prompts, "train")[:args.limit or None]
    check_types(args.keep_solved, [pr.ptype for pr in prompts])
    room = lm.cfg.max_seq_len - opts.max_new_tokens
    jobs = [(i, k) for i, pr in enumerate(prompts) for k in range(args.samples)
            if len(tokenizer.apply_chat_template(pr.messages)) <= room]
    scores: dict[int, list[float]] = {}
    t0 = time.time()
    for b in range(0, len(jobs), args.batch):
        chunk = jobs[b:b + args.batch]
        chosen = [prompts[i] for i, _ in chunk]
        seeds = [cfg.train.seed * 1_000_003 + i * 97 + k for i, k in chunk]
        replies = generate(lm, tokenizer, [tokenizer.apply_chat_template(pr.messages) for pr in chosen],
                           opts.max_new_tokens, opts.temperature, seeds)
        got, _ = rewards([pr.text for pr in chosen], [text for _, text, _ in replies],
                         prompt_types=[pr.ptype for pr in chosen], messages=[pr.messages for pr in chosen])
        for (i, _), s, (_, _, ended) in zip(chunk, got, replies):
            scores.setdefault(i, []).append(float(s) + (0.0 if ended else opts.no_end_penalty))
        done = min(b + args.batch, len(jobs))
        print(f"\r{done}/{len(jobs)} replies, {time.time() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(file=sys.stderr)
    failed, solved = select(scores, [pr.ptype for pr in prompts], args.threshold, args.keep_solved, cfg.train.seed)
    records = [{"messages": prompts[i].messages, "type": prompts[i].ptype, "sampled_scores": scores[i]}
               for i in sorted(failed + solved)]
    train, validation = split_validation(records, args.validation_share, args.threshold, cfg.train.seed)
    write_jsonl(args.out, train)
    if validation:
        write_jsonl(validation_path(args.out), validation)
        print(f"wrote {len(validation)} validation prompts to {validation_path(args.out)}")
    for ptype in sorted({pr.ptype for pr in prompts}):
        of_type = [i for i in scores if prompts[i].ptype == ptype]
        fails = sum(min(scores[i]) < args.threshold for i in of_type)
        mean_fail = np.mean([s < args.threshold for i in of_type for s in scores[i]])
        print(f"{ptype}: {len(of_type)} prompts, {fails} with a failed sample, {mean_fail:.1%} of samples failed")
    print(f"wrote {len(train)} of {len(failed)} failing + {len(solved)} solved prompts to {args.out}")
    return 0


def keep_solved_counts(text: str) -> dict[str, int]:
    """--keep-solved: "N" (every type, the key "*") or "TYPE=N,TYPE=N"."""
    try:
        counts = ({"*": int(text)} if "=" not in text
                  else {k.strip(): int(v) for k, v in (part.split("=") for part in text.split(","))})
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give N, or TYPE=N pairs like allowed=40,disallowed=60") from None
    if any(n < 0 for n in counts.values()):
        raise argparse.ArgumentTypeError(f"{text!r}: counts must be 0 or more")
    return counts


def check_types(keep_solved: dict[str, int], ptypes: list[str]) -> None:
    """Refuse a --keep-solved type that no prompt has (before the minutes of sampling, not after)."""
    unknown = sorted(set(keep_solved) - {"*"} - set(ptypes))
    if unknown:
        raise SystemExit(f"--keep-solved: no prompts of type {unknown[0]!r} (types: {', '.join(sorted(set(ptypes)))})")


def select(scores: dict[int, list[float]], ptypes: list[str], threshold: float, keep_solved: dict[str, int],
           seed: int) -> tuple[list[int], list[int]]:
    """(failing, solved): every prompt with a sample below `threshold`, and a seeded draw of `keep_solved[type]`
    (or `keep_solved["*"]`) of each type's prompts with none."""
    import numpy as np

    failed = [i for i, s in scores.items() if min(s) < threshold]
    rng = np.random.default_rng(seed)
    solved = []
    for ptype in sorted(set(ptypes)):
        pool = [i for i, s in scores.items() if min(s) >= threshold and ptypes[i] == ptype]
        solved += [pool[j] for j in rng.permutation(len(pool))[:keep_solved.get(ptype, keep_solved.get("*", 0))]]
    return failed, solved


def split_validation(records: list[dict], share: float, threshold: float, seed: int) -> tuple[list[dict], list[dict]]:
    """(train, validation): a seeded `share` of each group of records (prompt type x failing or solved) held out,
    each list in the records' order."""
    import numpy as np

    groups: dict[tuple, list[int]] = {}
    for i, r in enumerate(records):
        groups.setdefault((r["type"], min(r["sampled_scores"]) < threshold), []).append(i)
    rng = np.random.default_rng([seed, 3])
    held = set()
    for key in sorted(groups):
        members = groups[key]
        held.update(members[j] for j in rng.permutation(len(members))[:round(share * len(members))])
    return ([r for i, r in enumerate(records) if i not in held], [r for i, r in enumerate(records) if i in held])


def validation_path(out: Path) -> Path:
    return out.with_name(out.name.removesuffix(".jsonl") + ".val.jsonl")


def write_jsonl(path: Path, records: list[dict]) -> None:
    with path.open("w") as f:
        f.writelines(json.dumps(r) + "\n" for r in records)


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    from foresight.cli import run_script

    raise SystemExit(run_script(main, "scripts/hard_prompts.py"))
