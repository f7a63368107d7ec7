"""Training-step throughput: our Transformer vs Hugging Face's LlamaForCausalLM of the same shape.

One step = forward, cross-entropy, backward, AdamW step, zero_grad, on the same random token batch. Both models start
from the same weights (ours converted with foresight.weights.hf), the loss is computed the same way outside both models,
and the first step's losses are checked to agree, so the two really are the same network. Our model runs in standard
parametrization, untied (Llama's default); transformers uses SDPA attention. Timings are interleaved in one process
(bench/common.py), warm-up excluded, medians reported.

    .venv/bin/python bench/train_step.py [--width 512] [--layers 8] [--heads 8] [--vocab 8192] [--seq 256]
                                         [--batch 8] [--steps 1] [--repeats 5] [--threads 2] [--no-keep-memory]
                                         [--device cpu|cuda] [--dtype float32|bfloat16] [--compile]

On a GPU (`--device cuda --dtype bfloat16`: bf16 autocast for both, weights and optimizer state in fp32, as the
trainer does) it also prints each model's model-FLOPs utilization against the card's dense bf16 peak
(foresight.train.flops: 6·N per token plus attention). --compile runs both models through torch.compile (the
whole model each; the trainer compiles per block under FSDP). Last line: `ratio: X` = our tokens/s / transformers' tokens/s.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_ratio, time_interleaved  # noqa: E402


def build_models(args):
    from transformers import LlamaConfig, LlamaForCausalLM

    from foresight.model.config import ModelConfig
    from foresight.weights.hf import config_to_hf, state_dict_to_hf
    from foresight.model.transformer import Transformer

    cfg = ModelConfig(vocab_size=args.vocab, d_model=args.width, n_layers=args.layers, n_heads=args.heads,
                      max_seq_len=args.seq, parametrization="sp", tie_embeddings=False)
    torch.manual_seed(0)
    ours = Transformer(cfg)
    hf_cfg = LlamaConfig(**config_to_hf(cfg))
    hf_cfg.use_cache = False  # training: no KV cache
    theirs = LlamaForCausalLM._from_config(hf_cfg, attn_implementation="sdpa", dtype=torch.float32)
    missing, unexpected = theirs.load_state_dict(state_dict_to_hf(ours.state_dict(), cfg), strict=False)
    if [k for k in missing if not k.endswith("inv_freq")] or unexpected:
        raise SystemExit(f"weight conversion mismatch: missing {missing}, unexpected {unexpected}")
    n_ours, n_theirs = ours.num_params(), sum(p.numel() for p in theirs.parameters())
    if n_ours != n_theirs:
        raise SystemExit(f"shapes differ: ours has {n_ours:,} parameters, transformers' {n_theirs:,}")
    return cfg, ours.train(), theirs.train()


def make_step(model, optimizer, logits_of, inputs, targets, autocast=None):
    """One full training step; returns the loss (a Python float only when asked, so timing has no extra sync)."""
    def step():
        with autocast or contextlib.nullcontext():
            logits = logits_of(model, inputs)
        loss = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten())
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss
    return step


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--width", type=int, default=512)
    parser.add_argument("--layers", type=int, default=8)
    parser.add_argument("--heads", type=int, default=8)
    parser.add_argument("--vocab", type=int, default=8192)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=1, help="training steps per timed call")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls per model (after one warm-up call)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-4)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"],
                        help="bfloat16: autocast, as train.dtype = 'bfloat16' does")
    parser.add_argument("--no-keep-memory", action="store_true",
                        help="skip foresight.runtime.keep_freed_memory (the glibc setting the CLI applies at start)")
    parser.add_argument("--compile", action="store_true", help="torch.compile both models")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if not args.no_keep_memory:
        # Process-wide, so it helps both models alike; the CLI does the same for every real training run.
        from foresight.runtime import keep_freed_memory
        keep_freed_memory()

    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("--device cuda, but no CUDA device is available")
    device = torch.device(args.device)
    cfg, ours, theirs = build_models(args)
    ours, theirs = ours.to(device), theirs.to(device)
    gen = torch.Generator().manual_seed(0)
    batch = torch.randint(0, args.vocab, (args.batch, args.seq + 1), generator=gen).to(device)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    bf16 = args.dtype == "bfloat16"
    # one autocast object serves every step of both models, as one serves every step of the trainer
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else None

    from foresight.config import TrainConfig
    from foresight.train.optim import build_optimizer

    # ours: the trainer's own optimizer (per-group rates, fused AdamW on a GPU); theirs: the same settings by hand
    opt_ours = build_optimizer(ours, TrainConfig(lr=args.lr, weight_decay=0.1, beta1=0.9, beta2=0.95))
    fused = True if device.type == "cuda" else None
    decay = [p for p in theirs.parameters() if p.ndim >= 2]
    no_decay = [p for p in theirs.parameters() if p.ndim < 2]
    opt_theirs = torch.optim.AdamW([{"params": decay, "weight_decay": 0.1}, {"params": no_decay, "weight_decay": 0.0}],
                                   lr=args.lr, betas=(0.9, 0.95), fused=fused)

    if args.compile:  # after the optimizers: compiling wraps the modules, the parameters stay the same
        ours, theirs = torch.compile(ours), torch.compile(theirs)
    step_ours = make_step(ours, opt_ours, lambda m, x: m(x), inputs, targets, autocast)
    step_theirs = make_step(theirs, opt_theirs, lambda m, x: m(input_ids=x).logits, inputs, targets, autocast)

    # The first step doubles as the check that both are the same network (same weights, same loss).
    loss_ours, loss_theirs = step_ours().item(), step_theirs().item()
    print(f"first-step loss: ours {loss_ours:.6f}, transformers {loss_theirs:.6f}")
    if abs(loss_ours - loss_theirs) > (1e-2 if bf16 else 1e-4) * abs(loss_theirs):  # bf16 rounds differently
        raise SystemExit("the two models disagree on the first loss: not the same network")

    def repeat(step):
        return lambda: [step() for _ in range(args.steps)]

    seconds = time_interleaved({"ours": repeat(step_ours), "transformers": repeat(step_theirs)},
                               repeats=args.repeats, warmup=0)  # the check step above was the warm-up
    tokens = args.steps * args.batch * args.seq
    n_params = ours.num_params()
    print(f"shape: width {cfg.d_model}, {cfg.n_layers} layers, {cfg.n_heads} heads, d_ff {cfg.d_ff}, "
          f"vocab {cfg.vocab_size}, seq {args.seq}, batch {args.batch}; {n_params / 1e6:.1f}M parameters; "
          f"{args.dtype} on {device_name(device)}")
    from foresight.train.flops import device_peak_flops, flops_per_token

    peak = device_peak_flops(device)[0] if device.type == "cuda" else None  # MFU is a GPU figure here
    rates = {}
    for name, secs in seconds.items():
        rates[name] = tokens / median(secs)
        mfu = f", MFU {100 * flops_per_token(cfg, args.seq) * rates[name] / peak:.1f}%" if peak and bf16 else ""
        print(f"{name:>12}: {rates[name]:8.1f} tokens/s  (median of {len(secs)}; "
              f"per call {min(secs):.3f}-{max(secs):.3f} s for {args.steps} step(s){mfu})")
    print_ratio(rates["ours"] / rates["transformers"])


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU, {torch.get_num_threads()} threads"


if __name__ == "__main__":
    main()
