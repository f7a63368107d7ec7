"""Image-text training on the shared loop: `foresight vlm train CONFIG --out RUN`.

Each example is one scene (drawn when its batch is built, at the encoder's size) and one conversation about it,
rendered by the language model's own chat template with the image's placeholder tokens in the user turn; the loss
is the next-token cross-entropy on the assistant's tokens (`align/tokens.py` marks them), as in SFT. Rows are
right-padded to the longest in their micro-batch (causal attention never reads the padding after a row's end).
The examples of optimizer step s are a function of s alone (`align_run.step_order`), so --resume continues
exactly.

What trains depends on `vlm.stage`: the projector always; the language model in "instruct" and "all"; the encoder
unless it is frozen (the pretrained EfficientNet always is).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from foresight.align import run as align_run
from foresight.align.sft import IGNORE, trained_token_loss
from foresight.align.tokens import conversation_tokens
from foresight.data import labelled, scenes
from foresight.data.images import image_tensor
from foresight.errors import ForesightError
from foresight.model.vlm import ImagePromptTokenizer, VisionLanguageModel
from foresight.train.distributed import DistInfo, micro_batches
from foresight.train.flops import IMAGE_TEXT_FLOPS_FORMULA, image_text_flops, image_text_params
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer
from foresight.vlm.config import VLMConfig, VLMDataConfig
from foresight.vlm.model_io import build_vlm, save_vlm, scratch_tokenizer

STAGE_TASKS = {"caption": ("caption",), "instruct": ("qa",), "all": ("caption", "qa")}


@dataclass
class Example:
    item: scenes.SceneExample | labelled.LabelledExample  # draws or reads its image at any size
    ids: list[int]
    trained: list[bool]


@dataclass
class Batch:
    tokens: torch.Tensor  # [m, T]
    targets: torch.Tensor  # [m, T], IGNORE where not trained
    images: torch.Tensor  # [m, 3, S, S], one per row

    def to(self, device) -> "Batch":
        return Batch(*(t.to(device, non_blocking=True) for t in (self.tokens, self.targets, self.images)))


def image_text_examples(data: VLMDataConfig, split: str, tasks: tuple[str, ...]) -> list:
    """The conversations of a split: scenes of the configured kinds, then each labelled set's images."""
    n_scenes = data.train_scenes if split == "train" else data.heldout_scenes
    items = scenes.examples(split, n_scenes, tuple(data.kinds), tasks) if data.kinds else []
    n_set = data.set_train if split == "train" else data.set_heldout
    for name in data.sets:
        if split == "train" or n_set:
            items += labelled.examples(name, split, n_set, tasks)
    return items


def tokenize(tokenizer, items: list, max_len: int) -> tuple[list[Example], int]:
    out, too_long = [], 0
    for item in items:
        ids, trained = conversation_tokens(tokenizer, item.messages, where=f"{item.split} {item.task} {item.index}")
        if len(ids) > max_len:
            too_long += 1
        else:
            out.append(Example(item, ids, trained))
    return out, too_long


@dataclass
class ConversationStats:
    """What an image-text run's compute depends on besides the shapes (train.flops.image_text_flops)."""

    vocab_size: int  # the language model's: the tokenizer's, plus the image placeholder
    positions: float  # mean input positions per training conversation, image tokens included
    trained: float  # mean trained (assistant) positions per training conversation
    conversations: int  # training conversations (those that fit in train.seq_len + 1 tokens)

    @staticmethod
    def of(examples: list[Example], vocab_size: int) -> "ConversationStats":
        # a row's inputs are ids[:-1] and its targets ids[1:]: positions and trained targets
        return ConversationStats(vocab_size, float(np.mean([len(ex.ids) - 1 for ex in examples])),
                                 float(np.mean([sum(ex.trained[1:]) for ex in examples])), len(examples))


def conversation_stats(cfg: VLMConfig) -> ConversationStats:
    """The training conversations of a from-scratch run, measured without training it: the same conversations,
    tokenizer and length limit as `train_vlm`, so a ladder planned from these counts the FLOPs that each of its
    runs' summaries then reports."""
    if cfg.base != "scratch":
        raise ForesightError(f"conversation statistics are measured for base = 'scratch' runs, not {cfg.base!r}")
    items = image_text_examples(cfg.data, "train", STAGE_TASKS[cfg.vlm.stage])
    tokenizer = scratch_tokenizer(cfg, items)
    image_id = tokenizer.vocab_size  # as model_io._scratch places it
    examples, _ = tokenize(ImagePromptTokenizer(tokenizer, image_id, cfg.vision.tokens_per_image), items,
                           cfg.train.seq_len + 1)
    if not examples:
        raise ForesightError(f"no conversation fits in train.seq_len + 1 = {cfg.train.seq_len + 1} tokens")
    return ConversationStats.of(examples, image_id + 1)


def compute_is_counted(cfg: VLMConfig) -> bool:
    """Whether `image_text_flops` defines this run's compute: a ViT encoder that trains, with the language model
    (every stage but "caption")."""
    return cfg.vision.encoder == "vit" and not cfg.vision.frozen and cfg.vlm.stage != "caption"


def scaling_fields(cfg: VLMConfig, lm, stats: ConversationStats, steps: int, heldout_loss) -> dict:
    """The summary fields a scaling ladder reads, under the names the text trainer writes them (flops, params,
    non_embedding_params, tokens, final_val_loss), so that `foresight forecast`, `foresight ladder run` and
    `foresight fit DIR` read an image-text run as they read a text one. `tokens` counts the language model's input
    positions, image tokens included; final_val_loss is final_heldout_loss (the held-out conversations' loss)."""
    conversations = steps * cfg.train.batch_size
    params, non_embedding = image_text_params(lm, cfg.vision)
    return {"flops": image_text_flops(lm, cfg.vision, stats.positions, stats.trained, conversations),
            "flops_formula": IMAGE_TEXT_FLOPS_FORMULA, "params": params, "non_embedding_params": non_embedding,
            "tokens": round(conversations * stats.positions), "mean_positions": stats.positions,
            "mean_trained_positions": stats.trained, "final_val_loss": heldout_loss}


def make_batch(examples: list[Example], size: int) -> Batch:
    width = max(len(ex.ids) for ex in examples) - 1
    tokens = torch.zeros(len(examples), width, dtype=torch.long)
    targets = torch.full((len(examples), width), IGNORE, dtype=torch.long)
    for r, ex in enumerate(examples):
        n = len(ex.ids) - 1
        tokens[r, :n] = torch.tensor(ex.ids[:-1])
        targets[r, :n] = torch.tensor([t if keep else IGNORE for t, keep in zip(ex.ids[1:], ex.trained[1:])])
    images = image_tensor([ex.item.image(size) for ex in examples])
    return Batch(tokens, targets, images)


class ReplyLoss(nn.Module):
    """Mean cross-entropy over the trained (assistant) positions; the output head runs on those only."""

    def __init__(self, vlm: VisionLanguageModel):
        super().__init__()
        self.vlm = vlm

    def param_groups(self, weight_decay: float) -> list[dict]:
        return self.vlm.param_groups(weight_decay)

    def forward(self, batch: Batch, reduction: str = "mean") -> torch.Tensor:
        return trained_token_loss(self.vlm, self.vlm.hidden_states(batch.tokens, batch.images), batch.targets,
                                  reduction)


def train_vlm(cfg: VLMConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    return align_run.run_with_processes(cfg, _train_vlm, out, resume, progress)


def _train_vlm(cfg: VLMConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    t = cfg.train
    device, autocast = align_run.start(cfg, VLMConfig, out, resume, info)
    t0 = time.time()
    tasks = STAGE_TASKS[cfg.vlm.stage]
    train_items = image_text_examples(cfg.data, "train", tasks)
    heldout_items = image_text_examples(cfg.data, "heldout", tasks)

    built = build_vlm(cfg, train_items, device)
    vlm, tokenizer = built.vlm, built.tokenizer
    if t.seq_len + 1 > vlm.cfg.max_seq_len:
        raise ForesightError(f"train.seq_len ({t.seq_len}) must be below the language model's context "
                             f"({vlm.cfg.max_seq_len})")
    if cfg.vlm.stage == "caption":
        vlm.lm.requires_grad_(False)  # stage 1: only the projector (and a trainable encoder) learns
    examples, too_long = tokenize(tokenizer, train_items, t.seq_len + 1)
    if not examples:
        raise ForesightError(f"no conversation fits in train.seq_len + 1 = {t.seq_len + 1} tokens")
    heldout, _ = tokenize(tokenizer, heldout_items, t.seq_len + 1)

    per_process, micro = micro_batches(t, info)
    steps = cfg.vlm.steps if cfg.vlm.steps > 0 else max(1, int(np.ceil(cfg.vlm.epochs * len(examples) / t.batch_size)))
    trainable = sum(p.numel() for p in vlm.parameters() if p.requires_grad)
    if info.is_main:
        sets = f" and {len(cfg.data.sets)} labelled sets" if cfg.data.sets else ""
        print(f"vlm {cfg.vlm.stage}: {len(examples):,} conversations about {cfg.data.train_scenes:,} scenes{sets} "
              f"({too_long} too long), {vlm.tokens_per_image} image tokens each; {trainable:,} trainable "
              f"parameters; {steps} steps of {t.batch_size}")

    torch.manual_seed(t.seed)
    loss_model = ReplyLoss(vlm)
    size = cfg.vision.image_size

    def batch(step: int, m: int) -> Batch:
        order = align_run.step_order(len(examples), t.seed, step, t.batch_size, info.rank * per_process + m * micro,
                                     micro)
        return make_batch([examples[i] for i in order], size).to(device)

    @torch.no_grad()
    def evaluate() -> dict:
        if not heldout:
            return {}
        was = loss_model.training
        loss_model.eval()
        total, count = 0.0, 0
        for i in range(0, len(heldout), micro):
            b = make_batch(heldout[i:i + micro], size).to(device)
            with autocast:
                total += loss_model(b, reduction="sum").item()
            count += int((b.targets != IGNORE).sum())
        loss_model.train(was)
        return {"val_loss": total / max(count, 1)}

    result = train_loop(loss_model, lambda m: build_optimizer(m, t),
                        cfg=t, out=out, steps=steps, accum=per_process // micro,
                        tokens_per_step=t.batch_size * t.seq_len, batch=batch, loss=lambda fwd, b: fwd(b),
                        evaluate=evaluate, info=info, device=device, autocast=autocast, resume=resume,
                        progress=progress)
    summary = {"stage": cfg.vlm.stage, "base": cfg.base, "init": cfg.vlm.init or None, "steps": steps,
               "conversations": len(examples), "left_out_too_long": too_long, "trainable_parameters": trainable,
               "final_train_loss": result.train_loss, "final_heldout_loss": result.metrics.get("val_loss"),
               "train_seconds": result.train_seconds, "wall_seconds": result.wall_seconds,
               "model": str(out / align_run.MODEL_DIR)}
    if compute_is_counted(cfg):
        summary |= scaling_fields(cfg, vlm.cfg, ConversationStats.of(examples, vlm.cfg.vocab_size), steps,
                                  summary["final_heldout_loss"])
    if info.is_main:
        save_vlm(built, out)
        if cfg.vlm.eval_questions and cfg.vlm.stage != "caption":
            from foresight.vlm.vqa import evaluate_vqa

            vlm.eval()
            summary["vqa"] = evaluate_vqa(vlm, tokenizer, cfg.data, cfg.vlm.eval_questions)
        align_run.write_summary(out, summary)
        print(f"vlm: {time.time() - t0:.0f} s; wrote {out / align_run.MODEL_DIR}")
        if "vqa" in summary:
            print(json.dumps(summary["vqa"]["accuracy"], indent=1))
    return summary
