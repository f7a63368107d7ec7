"""Reward-model training: foresight's `train_rm` against TRL's `RewardTrainer` on the same preference pairs.

Both start from the same float32 body (SmolLM2-135M-Instruct by default: our loader's weights, and the Hugging Face
folder written from them) with a scalar head on the last token's final-norm hidden state, and train with the
Bradley-Terry loss -log sigmoid(r_chosen - r_rejected) on the same pairs, in the same order, with the same AdamW (lr,
betas, eps, weight decay), gradient clipping, constant learning rate without warm-up, batch and number of epochs,
fp32 on the CPU, one process, the same number of threads. Ours runs exactly as `foresight align rm` does
(`train_rm`: `RewardModel` = body + linear head with a bias); TRL's is `AutoModelForSequenceClassification` with
num_labels=1 (a bias-free head: a bias cancels in r_chosen - r_rejected, so it never learns in ours either), as its
documentation shows, with `bf16=False` and `gradient_checkpointing=False` (TRL turns both on by default).

Data: a seeded sample of `--pairs` pairs from `foresight align data`'s pairs_train.jsonl and `--heldout` from
pairs_heldout.jsonl whose longer side fits in seq_len tokens. TRL gets each pair in its explicit-prompt text form:
prompt = the chat template's rendering of the messages with the generation prompt, chosen / rejected = the replies
(TRL appends the end-of-turn token <|im_end|>, the tokenizer's eos). Its tokenization is checked to give exactly
our sequences (`foresight.align.tokens.reply_tokens`: prompt, reply, <|im_end|>; TRL's conversational form would add
the template's newline after it, and the head would read that newline instead). The pad token is set to
<|endoftext|>, which no sequence contains: the tokenizer's own pad token is <|im_end|>, and transformers' sequence
classifier reads the last token that is not the pad token, which would then be the one before <|im_end|>.

By default TRL's head starts from our head's initial weights (`train_rm` seeds torch with train.seed and builds
`RewardModel`; the bench does the same), so the two runs compute the same function on the same batches and their
first losses should agree; --trl-head-init keeps TRL's own (normal, std = initializer_range) instead.

Printed: the first losses of both; held-out pairwise accuracy (r_chosen > r_rejected) overall and per source, after
training, scored by each side's model (ours by `train_rm`'s own evaluation, TRL's by a forward pass with its
attention mask); training throughput in pairs per second over steps 2..S (step 1 is the warm-up) from the end of one
optimizer step to the end of the next on TRL's side (a callback), and the loop's own step time on ours
(metrics.jsonl). Held-out scoring is outside the timed steps on both sides.

    flock /tmp/foresight-bench.lock .venv/bin/python bench/reward_model.py [--pairs 128] [--heldout 128]
        [--seq 384] [--batch 8] [--epochs 1] [--lr 1e-5] [--threads 2] [--trl-head-init]

Needs the `compare` extra (trl) and the data built by `foresight align data`. Last line: `ratio: X` = our training
pairs per second / TRL's (steps 2..S, pairs / seconds).
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sft_step import (StepLog, add_optimizer_args, check_optimizer_groups, drop_printer, export_hf,  # noqa: E402
                      free, logged, loop_step_seconds, our_train_config, quiet_hf, step_clock, trl_common_args)

import numpy as np  # noqa: E402
import torch  # noqa: E402

from common import print_ratio  # noqa: E402

PAD = "<|endoftext|>"


def select(args, tokenizer, path: Path, n: int, max_len: int, seed: int) -> tuple[list[dict], list]:
    """A seeded sample of n pairs whose longer side fits in max_len tokens, and our tokenization of each."""
    from foresight.align import run as align_run
    from foresight.align.data import read_pairs
    from foresight.align.rm import tokenize_pairs

    if not path.is_file():
        raise SystemExit(f"{path} not found: build the data with `foresight align data`")
    records, pairs = [], []
    for r in align_run.sample(read_pairs(path), 4 * n, seed):
        p, _ = tokenize_pairs(tokenizer, [r], max_len)
        if p:
            records.append(r)
            pairs.append(p[0])
        if len(records) == n:
            break
    if len(records) < n:
        raise SystemExit(f"{path}: only {len(records)} pairs fit in {max_len} tokens")
    return records, pairs


def step_order(n: int, steps: int, batch: int, seed: int) -> list[int]:
    """The pair each training slot of our run takes, step by step (train_rm's per-epoch seeded permutations)."""
    order = []
    for k in range(steps * batch):
        epoch, index = divmod(k, n)
        order.append(int(np.random.default_rng([seed, epoch]).permutation(n)[index]))
    return order


def trl_text(hf_tok, record: dict) -> dict:
    prompt = hf_tok.apply_chat_template(record["messages"], tokenize=False, add_generation_prompt=True)
    return {"prompt": prompt, "chosen": record["chosen"], "rejected": record["rejected"]}


def our_initial_head(args, lm) -> torch.Tensor:
    """The head train_rm starts from: torch seeded with train.seed, then RewardModel(lm)."""
    from foresight.align.rm import RewardModel

    torch.manual_seed(args.seed)
    return RewardModel(lm).head.weight.detach().clone()


def run_ours(args, train_records, heldout_records, work: Path) -> dict:
    from foresight.align.config import AlignDataConfig, RMConfig, RMOptions
    from foresight.align.rm import train_rm

    paths = {}
    for name, records in (("train", train_records), ("heldout", heldout_records)):
        paths[name] = work / f"pairs_{name}.jsonl"
        paths[name].write_text("".join(json.dumps(r) + "\n" for r in records))
    cfg = RMConfig(base=args.base, data=AlignDataConfig(train=str(paths["train"]), heldout=str(paths["heldout"]),
                                                        max_examples=0, max_heldout=0),
                   train=our_train_config(args), rm=RMOptions(epochs=args.epochs))
    out = work / "ours"
    summary = train_rm(cfg, out, progress=False)
    if summary["pairs"] != len(train_records) or summary["heldout_pairs"] != len(heldout_records):
        raise SystemExit("our run kept a different set of pairs than the bench selected")
    losses, seconds = loop_step_seconds(out)
    return {"losses": losses, "seconds": seconds, "metrics": summary["heldout"], "steps": summary["steps"]}


@torch.no_grad()
def trl_rewards(model, pairs: list, batch: int, pad_id: int) -> np.ndarray:
    """[n, 2] rewards (chosen, rejected) from TRL's trained classifier; pairs of similar length batched together,
    right-padded with an attention mask as TRL's collator does."""
    model.eval()
    out = np.zeros((len(pairs), 2))
    order = sorted(range(len(pairs)), key=lambda i: max(len(pairs[i].chosen), len(pairs[i].rejected)))
    for b in range(0, len(order), batch):
        idx = order[b:b + batch]
        seqs = [pairs[i].chosen for i in idx] + [pairs[i].rejected for i in idx]
        longest = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), longest), pad_id, dtype=torch.long)
        mask = torch.zeros_like(ids)
        for j, s in enumerate(seqs):
            ids[j, :len(s)] = torch.tensor(s)
            mask[j, :len(s)] = 1
        r = model(input_ids=ids, attention_mask=mask, use_cache=False).logits[:, 0].float().numpy()
        out[idx, 0], out[idx, 1] = r[:len(idx)], r[len(idx):]
    return out


def run_trl(args, train_records, train_pairs, heldout_pairs, hf_dir: Path, work: Path, head, steps: int) -> dict:
    from datasets import Dataset
    from transformers import AutoModelForSequenceClassification, AutoTokenizer
    from trl import RewardConfig, RewardTrainer

    from foresight.align.rm import accuracy_by_source

    log = StepLog()

    tok = AutoTokenizer.from_pretrained(hf_dir)
    tok.pad_token = PAD
    pad_id = tok.pad_token_id
    if any(pad_id in s for p in train_pairs + heldout_pairs for s in (p.chosen, p.rejected)):
        raise SystemExit(f"a sequence contains the pad token {PAD}")
    model = AutoModelForSequenceClassification.from_pretrained(hf_dir, num_labels=1, dtype=torch.float32,
                                                               attn_implementation="sdpa")
    if head is not None:
        with torch.no_grad():
            model.score.weight.copy_(head)
    order = step_order(len(train_records), steps, args.batch, args.seed)
    dataset = Dataset.from_list([trl_text(tok, train_records[i]) for i in order])
    config = RewardConfig(**trl_common_args(args, work / "trl", steps), max_length=args.seq)
    trainer = logged(RewardTrainer, log)(model=model, args=config, train_dataset=dataset, processing_class=tok,
                                         callbacks=[step_clock(log)])
    drop_printer(trainer)
    prepared = trainer.train_dataset
    if len(prepared) != len(order):
        raise SystemExit(f"TRL kept {len(prepared)} of the {len(order)} pair slots")
    for k, i in enumerate(order):
        if prepared[k]["chosen_ids"] != train_pairs[i].chosen or prepared[k]["rejected_ids"] != train_pairs[i].rejected:
            raise SystemExit(f"{train_records[i]['id']}: TRL's tokens differ from ours")
    print(f"  TRL's tokenization = ours on all {len(order)} pair slots of training (chosen and rejected)")
    trainer.train()
    t0 = time.perf_counter()
    rewards = trl_rewards(trainer.model, heldout_pairs, args.batch, pad_id)
    scoring = time.perf_counter() - t0
    metrics = accuracy_by_source(heldout_pairs, rewards)
    seconds = [float("nan")] + [b - a for a, b in zip(log.ends[:-1], log.ends[1:])]
    del trainer, model
    free()
    return {"losses": log.losses, "seconds": seconds, "metrics": metrics, "tokens": log.tokens,
            "computed": log.computed, "scoring_seconds": scoring}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="smollm2-135m-instruct")
    parser.add_argument("--data-dir", default="", help="folder with pairs_{train,heldout}.jsonl (default: the built)")
    parser.add_argument("--pairs", type=int, default=128, help="training pairs")
    parser.add_argument("--heldout", type=int, default=128, help="held-out pairs")
    parser.add_argument("--seq", type=int, default=384, help="longest side kept, in tokens")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--epochs", type=float, default=1.0)
    add_optimizer_args(parser, lr=1e-5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--check-steps", type=int, default=5, help="first losses printed side by side")
    parser.add_argument("--trl-head-init", action="store_true", help="TRL's own head initialisation")
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

    steps = max(1, math.ceil(args.epochs * args.pairs / args.batch))  # as train_rm counts them
    if steps < 2:
        raise SystemExit("need at least 2 steps (step 1 is the warm-up)")
    data_dir = Path(args.data_dir) if args.data_dir else align_data_dir()
    with tempfile.TemporaryDirectory(prefix="bench-rm-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        work.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        loaded = load_model(args.base)
        check_optimizer_groups(loaded.model)
        max_len = min(args.seq, loaded.model.cfg.max_seq_len)
        train_records, train_pairs = select(args, loaded.tokenizer, data_dir / "pairs_train.jsonl", args.pairs,
                                            max_len, args.seed)
        heldout_records, heldout_pairs = select(args, loaded.tokenizer, data_dir / "pairs_heldout.jsonl",
                                                args.heldout, max_len, args.seed)
        head = None if args.trl_head_init else our_initial_head(args, loaded.model)
        hf_dir = export_hf(loaded, work)
        del loaded
        free()
        sides = [len(s) for p in train_pairs for s in (p.chosen, p.rejected)]
        print(f"{args.base}, float32 on CPU, {torch.get_num_threads()} threads; trl {trl.__version__}, transformers "
              f"{transformers.__version__}, torch {torch.__version__}")
        print(f"{len(train_pairs)} training pairs (sides: mean {np.mean(sides):.0f} tokens, max {max(sides)}), "
              f"{len(heldout_pairs)} held out; batch {args.batch} pairs, {args.epochs:g} epoch(s) = {steps} steps; "
              f"AdamW lr {args.lr}, betas ({args.beta1}, {args.beta2}), eps {args.eps}, weight decay "
              f"{args.weight_decay}, clip {args.grad_clip}, constant; TRL head "
              f"{'its own init' if head is None else 'initialised to ours'}; setup {time.time() - t0:.0f} s")

        print("\nours (train_rm):")
        ours = run_ours(args, train_records, heldout_records, work)
        if ours["steps"] != steps:
            raise SystemExit(f"our run took {ours['steps']} steps, the bench expected {steps}")
        print("TRL (RewardTrainer):")
        theirs = run_trl(args, train_records, train_pairs, heldout_pairs, hf_dir, work, head, steps)

    k = min(args.check_steps, steps)
    print(f"\nloss, first {k} steps (same batches in the same order):")
    print("  step        ours         TRL    |diff|")
    for s in range(k):
        print(f"  {s + 1:>4}  {ours['losses'][s]:10.6f}  {theirs['losses'][s]:10.6f}  "
              f"{abs(ours['losses'][s] - theirs['losses'][s]):.2e}")
    print(f"  mean loss over all {steps} steps: ours {np.mean(ours['losses']):.4f}, "
          f"TRL {np.mean(theirs['losses']):.4f}")

    print(f"\nheld-out pairwise accuracy ({len(heldout_pairs)} pairs):")
    counts = defaultdict(int)
    for p in heldout_pairs:
        counts[p.source] += 1
    keys = ["acc"] + sorted(key for key in ours["metrics"] if key.startswith("acc/"))
    print(f"  {'':<28} {'ours':>7} {'TRL':>7}  {'diff':>6}")
    for key in keys:
        label = "all" if key == "acc" else f"{key[4:]} ({counts[key[4:]]})"
        a, b = 100 * ours["metrics"][key], 100 * theirs["metrics"][key]
        print(f"  {label:<28} {a:6.1f}% {b:6.1f}%  {a - b:+6.1f}")
    diff = 100 * (ours["metrics"]["acc"] - theirs["metrics"]["acc"])
    verdict = "within" if abs(diff) <= 2 else "NOT within"
    print(f"  difference {diff:+.1f} points ({verdict} 2); mean margin r_chosen - r_rejected: ours "
          f"{ours['metrics']['margin']:.3f}, TRL {theirs['metrics']['margin']:.3f}")

    rates = pair_throughput(ours, theirs, steps, args.batch, args.seq, "rm")
    print(f"  TRL's held-out scoring took {theirs['scoring_seconds']:.1f} s (not timed on either side)")
    print_ratio(rates["ours"] / rates["TRL"])


def pair_throughput(ours: dict, theirs: dict, steps: int, batch: int, seq: int, section: str) -> dict[str, float]:
    """Print both sides' training throughput in pairs per second over steps 2..S (step 1 is the warm-up), the
    per-step time ratio and TRL's padding; return the two rates."""
    timed = slice(1, steps)
    rates = {}
    print(f"\nthroughput (steps 2..{steps}, {batch} pairs per step):")
    for name, res in (("ours", ours), ("TRL", theirs)):
        secs = res["seconds"][timed]
        rates[name] = batch * len(secs) / sum(secs)
        print(f"  {name:<5} {rates[name]:7.3f} pairs/s   {statistics.median(secs):6.2f} s/step (median of {len(secs)}; "
              f"{min(secs):.2f}-{max(secs):.2f})")
    paired = [a / b for a, b in zip(theirs["seconds"][timed], ours["seconds"][timed])]
    print(f"  per step, TRL's time / ours (the same batch on both sides): median {statistics.median(paired):.3f}, "
          f"range {min(paired):.2f}-{max(paired):.2f}")
    real, computed = theirs["tokens"][timed], theirs["computed"][timed]
    print(f"  a step reads {statistics.mean(real):.0f} tokens on average; TRL right-pads them to "
          f"{statistics.mean(computed):.0f} positions ({100 * sum(real) / sum(computed):.0f}% filled), ours packs "
          f"both sides into rows of {seq} ([{section}] pack)")
    return rates


if __name__ == "__main__":
    main()
