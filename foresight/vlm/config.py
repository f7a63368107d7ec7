"""The typed config of an image-text training run (`foresight vlm train CONFIG --out RUN`).

    base = "smollm2-135m-instruct"      # the language model: any MODEL argument, or "scratch" ([model] below)
    [vision]
    encoder = "efficientnet-lite0"      # or "vit" (trained here)
    image_size = 224
    [data]
    train_scenes = 20000
    [train]                             # the shared [train] table; length in vlm.epochs or vlm.steps
    lr = 1e-3
    [vlm]
    stage = "caption"                   # "caption" | "instruct" | "all"

Stages, as LLaVA trains: "caption" aligns the projector on captions with the language model frozen; "instruct"
tunes the projector and the language model on question-answer pairs, starting from a caption run (`vlm.init`);
"all" trains everything on both at once (the from-scratch recipe, whose language model learns language and images
together).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from foresight.align.config import no_token_budget
from foresight.config import TrainConfig
from foresight.data.labelled import SETS
from foresight.data.scenes import KINDS
from foresight.model.config import ModelConfig
from foresight.model.vision import VisionConfig

STAGES = ("caption", "instruct", "all")


@dataclass
class VLMDataConfig:
    # Synthetic scenes (foresight.data.scenes): the kinds to draw, how many distinct training scenes, and how many
    # held-out scenes the evaluations score.
    kinds: list[str] = field(default_factory=lambda: list(KINDS))
    train_scenes: int = 20000
    heldout_scenes: int = 200
    # Labelled image sets (foresight.data.labelled: mnist, fashion_mnist, tuxpaint), fetched once into the data
    # cache; the first set_train training images of each (0 = all) and the first set_heldout held-out ones.
    sets: list[str] = field(default_factory=list)
    set_train: int = 0
    set_heldout: int = 200

    def __post_init__(self) -> None:
        unknown = [k for k in self.kinds if k not in KINDS]
        if unknown or not (self.kinds or self.sets):
            raise ValueError(f"kinds: {', '.join(map(repr, unknown)) or 'empty (and no sets)'}; choose from "
                             f"{', '.join(KINDS)}")
        unknown = [s for s in self.sets if s not in SETS]
        if unknown:
            raise ValueError(f"sets: {', '.join(map(repr, unknown))}; choose from {', '.join(SETS)}")
        if (self.kinds and self.train_scenes < 1) or self.heldout_scenes < 0 or self.set_train < 0 \
                or self.set_heldout < 0:
            raise ValueError("train_scenes must be at least 1 (with kinds), heldout_scenes, set_train and "
                             "set_heldout at least 0")


@dataclass
class VLMOptions:
    stage: Literal["caption", "instruct", "all"] = "caption"
    # A vlm run to start from (its language model, projector and encoder): stage "instruct" starts from "caption".
    init: str = ""
    # The image placeholder: a special token of the base's tokenizer that text never uses (its embedding is
    # replaced by the image's, never read), e.g. "<empty_output>" for SmolLM2. Unused with base = "scratch".
    image_token: str = ""
    epochs: float = 1.0
    steps: int = 0
    # Held-out VQA questions of each type answered at the end (greedy, with and without the image); 0 = skip.
    eval_questions: int = 200


@dataclass
class VLMConfig:
    base: str = "smollm2-135m-instruct"
    # Only for base = "scratch": the language model's shape and its tokenizer (learned from the scenes' texts).
    model: ModelConfig = field(default_factory=lambda: ModelConfig(d_model=128, n_layers=2, n_heads=4,
                                                                   max_seq_len=128, parametrization="sp"))
    tokenizer: str = "bpe:400"
    vision: VisionConfig = field(default_factory=VisionConfig)
    data: VLMDataConfig = field(default_factory=VLMDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        seq_len=128, batch_size=16, lr=1e-3, schedule="cosine", warmup_fraction=0.05, min_lr_ratio=0.1,
        weight_decay=0.0, beta2=0.999, eval_every=0, checkpoint_every=100))
    vlm: VLMOptions = field(default_factory=VLMOptions)

    def __post_init__(self) -> None:
        no_token_budget(self.train, "vlm")
        if not self.base.strip():
            raise ValueError("base is empty: name the language model (e.g. smollm2-135m-instruct) or 'scratch'")
        if self.vlm.stage == "instruct" and not self.vlm.init:
            raise ValueError("vlm.stage = 'instruct' starts from a caption run: set vlm.init to its directory")
