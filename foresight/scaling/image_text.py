"""The image-text forecast: a ladder of image-text runs and a forecast of a larger one's held-out loss.

    modality = "image-text"
    [target]                  # a VLMConfig (foresight/vlm/config.py): base = "scratch", vision.encoder = "vit",
    base = "scratch"          # vlm.stage = "all", its length in vlm.steps
    [target.model] ...        # the language model: what the ladder's dial reshapes
    [target.vision] ...       # the ViT encoder: the same in every run
    [ladder] ... [fit] ...    # as for a text forecast

Everything but what this module says is the text forecast's (ladder.py, forecast.py): the compute levels, the
width/depth dial, the batch rule, the scheduler, the fit, the ledger, the verdict and the report.

What scales. The dial reshapes the language model (width and depth, heads of fixed size), with muP so that one
learning rate holds at every width (the VLM's parameter groups are muP-aware: model/vlm.py). The projector follows
the language model's width, as it must (it maps the encoder's features into that width). The ViT encoder is the
target's at every size: the ladder measures what a larger language model makes of the same vision. It is part of
every run's compute and parameter count all the same, so a ladder's small runs carry a fixed cost; keep the encoder
small next to the smallest language model (configs/forecast-vlm.toml) or the bottom of the ladder is mostly encoder.

Compute and tokens: `train.flops.image_text_flops` per training conversation (image tokens count as input
positions, the output head runs on trained positions only), at the training conversations' mean lengths, which
`vlm.train.conversation_stats` measures with the same tokenizer and examples as training (a run's summary reports
the FLOPs of the same function from its own measurement). A run's "tokens" are the language model's input
positions, image tokens included, and the compute-optimal rule (ladder.tokens_per_param) counts those.

The loss forecast is the held-out loss: the mean cross-entropy on the assistant tokens of the held-out scenes'
conversations (the run summary's final_heldout_loss, which it also writes as final_val_loss, the name every scaling
reader takes a run's loss from).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from foresight.config import config_to_dict, load_config
from foresight.model.config import ModelConfig
from foresight.scaling.ladder import ForecastConfig, LadderConfig, LadderKind, ladder_train
from foresight.train.flops import image_text_flops, image_text_params
from foresight.vlm.config import VLMConfig, VLMOptions


@dataclass
class ImageTextForecastConfig(ForecastConfig):
    """A forecast config whose target is an image-text run (`modality = "image-text"`)."""

    target: VLMConfig = field(default_factory=lambda: VLMConfig(
        base="scratch", model=ModelConfig(d_model=128, n_layers=2, n_heads=4, max_seq_len=160),
        vlm=VLMOptions(stage="all", steps=1000)))
    modality: Literal["image-text"] = "image-text"

    def __post_init__(self) -> None:
        super().__post_init__()
        t = self.target
        if t.base != "scratch":
            raise ValueError(f"target.base must be 'scratch' for an image-text forecast (the ladder reshapes the "
                             f"language model, so it is trained here), not {t.base!r}")
        if t.vision.encoder != "vit" or t.vision.frozen:
            raise ValueError("target.vision must be a ViT that trains (encoder = 'vit', frozen = false): its compute "
                             "is counted per patch, forward and backward")
        if t.vlm.stage != "all":
            raise ValueError(f"target.vlm.stage must be 'all' (captions and questions, everything trained at once), "
                             f"not {t.vlm.stage!r}")
        if t.vlm.init:
            raise ValueError("target.vlm.init must be empty: every run of the ladder starts from scratch")
        if t.vlm.steps < 1:
            raise ValueError("target.vlm.steps must be set: it is the target's length, from which its compute and "
                             "the ladder are planned")
        if t.train.seq_len + 1 > t.model.max_seq_len:
            raise ValueError(f"target.train.seq_len ({t.train.seq_len}) must be below target.model.max_seq_len "
                             f"({t.model.max_seq_len})")
        heldout = (t.data.heldout_scenes if t.data.kinds else 0) + (t.data.set_heldout if t.data.sets else 0)
        if heldout < 1:
            raise ValueError("target.data.heldout_scenes must be at least 1: the forecast is of the held-out loss")


# Conversation statistics by what they depend on: the ladder's runs and its target share them, and measuring them
# (learning the tokenizer, tokenizing every training conversation) takes seconds.
_STATS: dict[str, object] = {}


def conversation_stats(target: VLMConfig):
    """The target's `vlm.train.ConversationStats`, measured once per process."""
    from foresight.vlm.train import conversation_stats as measure

    key = json.dumps([target.base, target.tokenizer, config_to_dict(target.data), target.vlm.stage,
                      target.train.seq_len, target.vision.tokens_per_image], sort_keys=True)
    if key not in _STATS:
        _STATS[key] = measure(target)
    return _STATS[key]


class ImageTextLadder(LadderKind):
    """Image-text runs (`foresight vlm train`): the language model on the dial, the target's encoder in every run,
    compute from train/flops.py's image_text_flops at the training conversations' mean lengths."""

    modality = "image-text"
    command = ("vlm", "train")
    loss_name = "held-out image-text loss"
    prediction_name = "held-out image-text loss"

    def __init__(self, target: VLMConfig, lc: LadderConfig):
        super().__init__(target, lc)
        self.stats = conversation_stats(target)
        # The language model's real vocabulary (the learned tokenizer's, plus the image placeholder), so that the
        # output head is counted; every run learns the same tokenizer from the same conversations.
        self.template = dataclasses.replace(target.model, vocab_size=self.stats.vocab_size)
        self.per_sequence = self.stats.positions
        self.target_tokens = target.vlm.steps * target.train.batch_size * self.stats.positions

    @staticmethod
    def schema() -> type:
        return VLMConfig

    @staticmethod
    def train_run(config: Path, out: Path) -> None:
        from foresight.vlm.train import train_vlm

        train_vlm(load_config(config, VLMConfig), out, resume=True, progress=True)

    @classmethod
    def target_compute(cls, target: VLMConfig) -> float:
        return cls(target, LadderConfig()).compute()

    def per_token(self, model: ModelConfig) -> float:
        s = self.stats
        return image_text_flops(model, self.target.vision, s.positions, s.trained, 1) / s.positions

    def sizes(self, model: ModelConfig) -> tuple[int, int]:
        return image_text_params(model, self.target.vision)

    def compute(self) -> float:
        return self.run_compute(self.template, self.target.train.batch_size, self.target.vlm.steps)[0]

    def run_compute(self, model: ModelConfig, batch: int, steps: int) -> tuple[float, int]:
        s = self.stats
        # as vlm.train.scaling_fields counts a finished run
        return (image_text_flops(model, self.target.vision, s.positions, s.trained, steps * batch),
                round(steps * batch * s.positions))

    def run_config(self, model: ModelConfig, batch: int, steps: int) -> VLMConfig:
        t = self.target
        # Held-out VQA answers are not part of the forecast: the ladder's runs skip them.
        return VLMConfig(base=t.base, model=model, tokenizer=t.tokenizer, vision=copy.deepcopy(t.vision),
                         data=copy.deepcopy(t.data), train=ladder_train(t.train, batch, steps, self.lc),
                         vlm=dataclasses.replace(t.vlm, steps=steps, eval_questions=0))
