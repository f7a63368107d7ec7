"""Vision-language training step: our VisionLanguageModel against transformers' LlavaForConditionalGeneration.

One step = forward (image encoder, projector, language model), the loss, backward, gradient clipping, AdamW step,
zero_grad: what `foresight vlm train` does per optimizer step (`train_loop`), on one fixed random batch. Both models
are built from configs (random init, nothing downloaded) in float32 on the CPU, in one process, with the same
number of threads, and timed interleaved (bench/common.py): warm-up rounds, then --steps rounds in which each runs
one step, in an order that rotates; medians are reported.

Ours: `VisionLanguageModel` assembled as `foresight.vlm.model_io.build_vlm` does for base = "scratch" (a
`Transformer` in standard parametrization, untied, the image placeholder its last vocabulary id; encoder "vit":
patch embedding + learned positions + the language model's own `Block`s, bidirectional, final RMSNorm; then the
`Projector`, LayerNorm + Linear-GELU-Linear), the loss `foresight.vlm.train.ReplyLoss` (`trained_token_loss`: the
output head runs on the trained positions only), the optimizer from `foresight.train.optim.build_optimizer`.
The peer: `LlavaForConditionalGeneration` with a `SiglipVisionConfig` tower (no pooling head), a `LlamaConfig`
language model (the same shape; its weights are copied from ours and a text-only forward must give our loss), the
LLaVA-1.5 projector ("gelu", all patches: vision_feature_select_strategy = "full", vision_feature_layer = -1), SDPA
attention, `torch.optim.AdamW` with the same settings. transformers is timed two ways, each on its own loss path:
  labels          `model(input_ids, pixel_values, labels=...)`: its own shifted cross-entropy, the output head over
                  every position (the usual way to train it);
  logits_to_keep  `model(..., logits_to_keep=<bool mask of the trained positions>)`, cross-entropy taken outside:
                  the output head on the trained positions only, as ours does.
The ratio is against the faster of the two.

Default shapes (all flags below): images 64 x 64 in patches of 8 px = 64 image tokens; ViT width 192, 4 layers,
3 heads; language model width 384, 4 layers, 6 heads (2 key/value heads), SwiGLU 1024, vocabulary 16384; each row
= 8 prompt tokens, the 64 image placeholders, 120 text tokens (192 positions, 128 of them text); batch 8. The loss
is the mean next-token cross-entropy over the text after the image (120 positions a row), identical on both sides
(transformers' input_ids already hold one placeholder per image patch: it checks the count, it does not expand).

What cannot be matched (also printed):
  - vision blocks: ours are the language model's Block (RMSNorm, fused bias-free q/k/v, rotary positions on top of
    the learned ones, SwiGLU); SigLIP's are LayerNorm (with bias), q/k/v/out with biases, learned positions only, a
    GELU(tanh) MLP. SigLIP's intermediate_size is 1.5 x our SwiGLU width, so both MLPs have the same matrix
    parameters and FLOPs (two d x 1.5h matrices against three d x h).
  - patch embedding: ours a Linear on unfolded patches, SigLIP a strided Conv2d (same weights and FLOPs); ours maps
    pixels from [0, 1] to [-1, 1] inside, transformers gets them already mapped (its processor's job).
  - vision output: ours ends in an RMSNorm that the projector reads; LLaVA reads the last layer's hidden state
    (SigLIP's post_layernorm still runs, its output unused).
  - projector: ours starts with a LayerNorm (for the frozen CNN's unnormalised features); LLaVA's has none.

    .venv/bin/python bench/vision_step.py [--steps 6] [--warmup 1] [--check-steps 3] [--batch 8] [--threads 2]
        [--image-size 64] [--patch 8] [--vit-width 192] [--vit-layers 4] [--vit-heads 3]
        [--width 384] [--layers 4] [--heads 6] [--kv-heads 2] [--vocab 16384] [--prompt 8] [--text 120]

Last line: `ratio: X` = transformers' seconds per step (its faster loss path) / ours; > 1 means ours is faster.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import median, print_ratio, time_interleaved  # noqa: E402

SHAPE_DIFFERENCES = [
    "vision blocks: ours = the LM's Block (RMSNorm, bias-free fused qkv, rotary + learned positions, SwiGLU h); "
    "SigLIP = LayerNorm, q/k/v/out with biases, learned positions, GELU-tanh MLP 1.5h (same matrix params/FLOPs)",
    "patch embedding: ours Linear on unfolded patches (pixels mapped to [-1, 1] inside); SigLIP Conv2d (pixels "
    "given already mapped)",
    "vision output: ours final RMSNorm feeds the projector; LLaVA reads the last layer's hidden state (SigLIP's "
    "post_layernorm runs, unused)",
    "projector: ours LayerNorm + Linear-GELU-Linear; LLaVA's Linear-GELU-Linear",
]
IGNORE = -100  # foresight.align.sft.IGNORE and transformers' ignore_index alike


# ----- the two models --------------------------------------------------------------------------------------------


def build_ours(args):
    """Our VLM as build_vlm assembles it for base = "scratch": the language model, then the encoder and projector."""
    from foresight.model.config import ModelConfig
    from foresight.model.transformer import Transformer
    from foresight.model.vision import VisionConfig
    from foresight.model.vlm import VisionLanguageModel

    vision = VisionConfig(encoder="vit", image_size=args.image_size, patch_size=args.patch, d_model=args.vit_width,
                          n_layers=args.vit_layers, n_heads=args.vit_heads)
    seq = args.prompt + vision.tokens_per_image + args.text
    lm_cfg = ModelConfig(vocab_size=args.vocab, d_model=args.width, n_layers=args.layers, n_heads=args.heads,
                         n_kv_heads=args.kv_heads, max_seq_len=seq, parametrization="sp", tie_embeddings=False)
    torch.manual_seed(args.seed)
    lm = Transformer(lm_cfg)
    torch.manual_seed(args.seed)
    vlm = VisionLanguageModel(lm, vision, image_token_id=args.vocab - 1)  # one past the "tokenizer's" ids
    return vlm.train()


def build_theirs(args, ours):
    """LlavaForConditionalGeneration of the same shapes; its language model gets our language model's weights."""
    from transformers import LlamaConfig, LlavaConfig, LlavaForConditionalGeneration, SiglipVisionConfig

    from foresight.weights.hf import config_to_hf, state_dict_to_hf

    lm_cfg, vision = ours.cfg, ours.vision
    vit_ff = ours.encoder.blocks[0].mlp.d_ff
    text_config = LlamaConfig(**config_to_hf(lm_cfg))
    text_config.use_cache = False  # training: no KV cache
    vision_config = SiglipVisionConfig(
        hidden_size=vision.d_model, num_hidden_layers=vision.n_layers, num_attention_heads=vision.n_heads,
        intermediate_size=3 * vit_ff // 2, image_size=vision.image_size, patch_size=vision.patch_size,
        vision_use_head=False)  # LLaVA reads the patch states; the pooling head would be dead weight
    config = LlavaConfig(vision_config=vision_config, text_config=text_config, image_token_index=ours.image_token_id,
                         image_seq_length=vision.tokens_per_image, projector_hidden_act="gelu",
                         vision_feature_select_strategy="full", vision_feature_layer=-1,
                         tie_word_embeddings=lm_cfg.tie_embeddings)
    theirs = LlavaForConditionalGeneration._from_config(config, attn_implementation="sdpa", dtype=torch.float32)
    lm_state = {(k if k.startswith("lm_head.") else "model.language_model." + k.removeprefix("model.")): v
                for k, v in state_dict_to_hf(ours.lm.state_dict(), lm_cfg).items()}
    missing, unexpected = theirs.load_state_dict(lm_state, strict=False)
    missing = [k for k in missing if not k.startswith(("model.vision_tower.", "model.multi_modal_projector."))
               and not k.endswith("inv_freq")]
    if missing or unexpected:
        raise SystemExit(f"language-model weight copy: missing {missing}, unexpected {unexpected}")
    used = {theirs.config.text_config._attn_implementation, theirs.config.vision_config._attn_implementation}
    if used != {"sdpa"}:
        raise SystemExit(f"transformers chose attention {used}, not sdpa")
    return theirs.train()


def param_table(ours, theirs) -> list[tuple[str, int, int]]:
    def count(*modules) -> int:
        return sum(p.numel() for m in modules for p in m.parameters())

    hf = theirs.model
    rows = [("vision encoder", count(ours.encoder), count(hf.vision_tower)),
            ("projector", count(ours.projector), count(hf.multi_modal_projector)),
            ("language model", count(ours.lm), count(hf.language_model, theirs.lm_head))]
    rows.append(("total", count(ours), count(theirs)))
    if rows[-1][1] != sum(r[1] for r in rows[:-1]) or rows[-1][2] != sum(r[2] for r in rows[:-1]):
        raise SystemExit("the parameter breakdown misses a module")
    return rows


# ----- data, steps -----------------------------------------------------------------------------------------------


def make_batch(args, vlm, gen: torch.Generator):
    """One fixed batch: each row = prompt tokens, the image's placeholders, text; the loss trains every position whose
    next token is text after the image (our Batch: targets = next token or IGNORE; the images in [0, 1])."""
    from foresight.vlm.train import Batch

    n_img, image_id = vlm.tokens_per_image, vlm.image_token_id
    ids = torch.randint(0, image_id, (args.batch, args.prompt + n_img + args.text), generator=gen)
    ids[:, args.prompt:args.prompt + n_img] = image_id
    targets = torch.full_like(ids, IGNORE)
    targets[:, :-1] = ids[:, 1:]
    targets[:, :args.prompt + n_img - 1] = IGNORE  # the prompt and the image predict nothing trained
    images = torch.rand(args.batch, 3, vlm.vision.image_size, vlm.vision.image_size, generator=gen)
    return Batch(ids, targets, images)


def hf_inputs(batch) -> dict:
    """transformers' view of the same batch. labels are shifted inside its loss (labels[t + 1] is position t's
    target), so labels = targets moved one to the right; the last position has no target on either side. pixel
    values are mapped to [-1, 1] as ours does inside its encoder (SigLIP's processor does it)."""
    assert bool((batch.targets[:, -1] == IGNORE).all())
    labels = torch.cat([torch.full_like(batch.targets[:, :1], IGNORE), batch.targets[:, :-1]], dim=1)
    keep = batch.targets != IGNORE
    return {"input_ids": batch.tokens, "pixel_values": (batch.images - 0.5) / 0.5, "labels": labels, "keep": keep,
            "kept_targets": batch.targets[keep]}


def hf_loss_labels(model, x: dict) -> torch.Tensor:
    return model(input_ids=x["input_ids"], pixel_values=x["pixel_values"], labels=x["labels"]).loss


def hf_loss_keep(model, x: dict) -> torch.Tensor:
    logits = model(input_ids=x["input_ids"], pixel_values=x["pixel_values"], logits_to_keep=x["keep"]).logits
    return F.cross_entropy(logits.float(), x["kept_targets"])


def make_step(model, optimizer, loss_fn, clip: float):
    """One optimizer step as train_loop takes it: loss, backward, clip the global gradient norm, AdamW, zero_grad."""
    def step():
        loss = loss_fn()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip if clip > 0 else math.inf)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()
    return step


def hf_optimizer(model, args) -> torch.optim.AdamW:
    decay = [p for p in model.parameters() if p.ndim >= 2]
    rest = [p for p in model.parameters() if p.ndim < 2]
    return torch.optim.AdamW([{"params": decay, "weight_decay": args.weight_decay},
                              {"params": rest, "weight_decay": 0.0}],
                             lr=args.lr, betas=(args.beta1, args.beta2), eps=args.eps)


# ----- checks ----------------------------------------------------------------------------------------------------


@torch.no_grad()
def check_same_language_model(args, loss_model, theirs, gen: torch.Generator) -> tuple[float, float]:
    """Text-only batch (no placeholders): both language models must give the same loss (same shape and weights)."""
    from foresight.align.sft import trained_token_loss

    vlm = loss_model.vlm
    seq = args.prompt + vlm.tokens_per_image + args.text
    ids = torch.randint(0, vlm.image_token_id, (2, seq), generator=gen)
    targets = torch.cat([ids[:, 1:], torch.full_like(ids[:, :1], IGNORE)], dim=1)
    ours = float(trained_token_loss(vlm, vlm.hidden_states(ids, None), targets))
    return ours, float(theirs(input_ids=ids, labels=ids).loss)


def run_check(args, steps: dict, loss_model, theirs, batch, x, gen) -> None:
    ours_lm, theirs_lm = check_same_language_model(args, loss_model, theirs, gen)
    print(f"language models, text only, same weights: loss ours {ours_lm:.6f}, transformers {theirs_lm:.6f}")
    if not abs(ours_lm - theirs_lm) <= 1e-4 * abs(theirs_lm):
        raise SystemExit("the two language models differ: not the same shape")
    with torch.no_grad():
        by_labels, by_keep = float(hf_loss_labels(theirs, x)), float(hf_loss_keep(theirs, x))
        ours0 = float(loss_model(batch))
    print(f"image batch, before training: loss ours {ours0:.6f}; transformers labels {by_labels:.6f}, "
          f"logits_to_keep {by_keep:.6f} (ln vocab = {math.log(args.vocab):.3f})")
    if not abs(by_labels - by_keep) <= 1e-5 * abs(by_labels):
        raise SystemExit("transformers' two loss paths disagree: they do not train the same positions")
    # K steps each on the same batch (transformers: K with labels, then K more with logits_to_keep on the same model)
    losses = {name: [float(step()) for _ in range(args.check_steps)] for name, step in steps.items()}
    print(f"loss over {args.check_steps} training steps on the same batch (mean cross-entropy, text after the image):")
    for name, values in losses.items():
        print(f"  {name:<31} " + "  ".join(f"{v:.4f}" for v in values))
        if not all(math.isfinite(v) for v in values) or not values[-1] < values[0]:
            raise SystemExit(f"{name}: the loss is not finite or does not decrease")
    print("  check passed: finite losses, decreasing on every side")


# ----- main ------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--patch", type=int, default=8)
    parser.add_argument("--vit-width", type=int, default=192)
    parser.add_argument("--vit-layers", type=int, default=4)
    parser.add_argument("--vit-heads", type=int, default=3)
    parser.add_argument("--width", type=int, default=384)
    parser.add_argument("--layers", type=int, default=4)
    parser.add_argument("--heads", type=int, default=6)
    parser.add_argument("--kv-heads", type=int, default=2)
    parser.add_argument("--vocab", type=int, default=16384)
    parser.add_argument("--prompt", type=int, default=8, help="text tokens before the image (not trained)")
    parser.add_argument("--text", type=int, default=120, help="text tokens after the image (trained)")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=6, help="timed rounds (one step of each model per round)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed rounds after the check")
    parser.add_argument("--check-steps", type=int, default=3, help="steps per side of the loss check (>= 2)")
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--beta1", type=float, default=0.9)
    parser.add_argument("--beta2", type=float, default=0.999)
    parser.add_argument("--eps", type=float, default=1e-8)
    parser.add_argument("--weight-decay", type=float, default=0.0)
    parser.add_argument("--grad-clip", type=float, default=1.0)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-keep-memory", action="store_true",
                        help="skip foresight.runtime.keep_freed_memory (the glibc setting the CLI applies at start)")
    args = parser.parse_args()
    if args.check_steps < 2 or args.steps < 1:
        raise SystemExit("--check-steps must be at least 2 and --steps at least 1")
    torch.set_num_threads(args.threads)
    if not args.no_keep_memory:  # process-wide, so both models get it; the CLI does the same for every run
        from foresight.runtime import keep_freed_memory
        keep_freed_memory()
    import transformers

    transformers.logging.set_verbosity_error()

    from foresight.config import TrainConfig
    from foresight.train.optim import build_optimizer
    from foresight.vlm.train import ReplyLoss

    ours = build_ours(args)
    theirs = build_theirs(args, ours)
    loss_model = ReplyLoss(ours)
    train_cfg = TrainConfig(lr=args.lr, weight_decay=args.weight_decay, beta1=args.beta1, beta2=args.beta2,
                            eps=args.eps, grad_clip=args.grad_clip, device="cpu", dtype="float32",
                            threads=args.threads)
    opt_ours = build_optimizer(loss_model, train_cfg)
    opt_theirs = hf_optimizer(theirs, args)

    gen = torch.Generator().manual_seed(args.seed)
    batch = make_batch(args, ours, gen)
    x = hf_inputs(batch)
    steps = {
        "foresight": make_step(loss_model, opt_ours, lambda: loss_model(batch), args.grad_clip),
        "transformers (labels)": make_step(theirs, opt_theirs, lambda: hf_loss_labels(theirs, x), args.grad_clip),
        "transformers (logits_to_keep)": make_step(theirs, opt_theirs, lambda: hf_loss_keep(theirs, x),
                                                   args.grad_clip),
    }

    lm, vis = ours.cfg, ours.vision
    n_img, seq = ours.tokens_per_image, batch.tokens.shape[1]
    trained = int((batch.targets != IGNORE).sum())
    print(f"float32 on CPU, {torch.get_num_threads()} threads; torch {torch.__version__}, transformers "
          f"{transformers.__version__}")
    print(f"shapes: images {vis.image_size}x{vis.image_size}, patches of {vis.patch_size} -> {n_img} image tokens; "
          f"ViT width {vis.d_model}, {vis.n_layers} layers, {vis.n_heads} heads, MLP ours SwiGLU "
          f"{ours.encoder.blocks[0].mlp.d_ff} / SigLIP {theirs.config.vision_config.intermediate_size}; LM width "
          f"{lm.d_model}, {lm.n_layers} layers, {lm.n_heads} heads ({lm.n_kv_heads} kv), SwiGLU {lm.d_ff}, vocab "
          f"{lm.vocab_size}, untied; rows of {seq} positions ({args.prompt} prompt + {n_img} image + {args.text} "
          f"text), batch {args.batch}, {trained} trained positions; AdamW lr {args.lr}, betas ({args.beta1}, "
          f"{args.beta2}), weight decay {args.weight_decay}, clip {args.grad_clip}")
    print("parameters:               foresight   transformers")
    for name, a, b in param_table(ours, theirs):
        print(f"  {name:<22} {a:>11,}  {b:>13,}  ({100 * (b - a) / a:+.1f}%)")
    print("  (the gap: SigLIP's biases and LayerNorm biases, its post_layernorm; our projector's LayerNorm)")
    print("shape differences that cannot be matched:")
    for line in SHAPE_DIFFERENCES:
        print(f"  - {line}")

    run_check(args, steps, loss_model, theirs, batch, x, gen)

    seconds = time_interleaved(steps, repeats=args.steps, warmup=args.warmup)
    print(f"seconds per training step (median of {args.steps}, after {args.warmup} warm-up round(s) and the check):")
    med = {name: median(s) for name, s in seconds.items()}
    for name, s in seconds.items():
        print(f"  {name:<31} {med[name]:7.3f} s  ({min(s):.3f}-{max(s):.3f})   "
              f"{args.batch * seq / med[name]:7.1f} positions/s")
    best = min(("transformers (labels)", "transformers (logits_to_keep)"), key=med.get)
    print(f"  transformers' faster path: {best}; labels / ours {med['transformers (labels)'] / med['foresight']:.3f}, "
          f"logits_to_keep / ours {med['transformers (logits_to_keep)'] / med['foresight']:.3f}")
    print_ratio(med[best] / med["foresight"])


if __name__ == "__main__":
    main()
