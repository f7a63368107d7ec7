"""Typed configs for post-training: one schema per algorithm, each on the shared [train] table.

An SFT or reward-model config names the model to start from (any MODEL argument: a built-in name, a run directory,
a Hugging Face folder, a .gguf file), its data (JSONL files; empty means the files `foresight align data` builds),
and the optimizer settings in the same [train] table pre-training uses. Training length is given in epochs over the
data (or an explicit step count), never in tokens or FLOPs: those keys of [train] belong to pre-training and are
refused here, naming the key to use instead.

    base = "smollm2-135m-instruct"
    [data]
    max_examples = 2000
    [train]
    seq_len = 512
    batch_size = 8
    lr = 2e-5
    [sft]
    epochs = 1.0
"""

from __future__ import annotations

from dataclasses import dataclass, field

from foresight.config import TrainConfig


@dataclass
class AlignDataConfig:
    # JSONL files; "" means the files `foresight align data` builds under the data root (sft_*.jsonl or pairs_*.jsonl).
    train: str = ""
    heldout: str = ""
    # Use at most this many training examples (a seeded sample); 0 means all.
    max_examples: int = 0
    # At most this many training examples from each source (a seeded sample per source; 0 means no cap), except
    # the sources listed in uncapped_sources: e.g. keep every behaviour demonstration, cap the corpus-derived ones.
    max_per_source: int = 0
    uncapped_sources: list[str] = field(default_factory=list)
    # Each kept training example of these sources appears this many times per epoch (after the caps): upweights a
    # small set, e.g. repeat = { over_refusal = 3 } for three helpful answers to risky-looking requests per pass.
    repeat: dict[str, int] = field(default_factory=dict)
    # Held-out examples scored at each evaluation; 0 means all.
    max_heldout: int = 256
    # Where `foresight align data` wrote its files; "" means $FORESIGHT_DATA or ./data.
    root: str = ""

    def __post_init__(self) -> None:
        for source, times in self.repeat.items():
            if times < 1:
                raise ValueError(f"repeat.{source} must be at least 1, not {times}")


@dataclass
class SFTOptions:
    # Passes over the training data; ignored when steps > 0.
    epochs: float = 1.0
    steps: int = 0
    # Pack several conversations into each row of train.seq_len tokens (each attends only to itself, positions
    # restart at 0): no padding is trained on or computed. false: one conversation per row, right-padded.
    pack: bool = True


@dataclass
class RMOptions:
    epochs: float = 1.0
    steps: int = 0
    # Bradley-Terry with a margin: loss = -log sigmoid(r_chosen - r_rejected - margin).
    margin: float = 0.0
    # Pack the chosen and rejected sides of a micro-batch into rows of train.seq_len tokens (each attends only to
    # itself): no padding computed. false: one right-padded row per side.
    pack: bool = True
    # Pairs whose longer side exceeds train.seq_len tokens are left out (counted in the summary).


@dataclass
class DPOOptions:
    epochs: float = 1.0
    steps: int = 0
    # The KL strength: implicit reward = beta * (log pi - log pi_ref). TRL's default is 0.1.
    beta: float = 0.1
    # "sigmoid" (the paper's) or "ipo"; label_smoothing > 0 is conservative DPO (sigmoid only).
    loss: str = "sigmoid"
    label_smoothing: float = 0.0
    # The frozen reference: "" = the base model (the usual choice: the SFT model DPO starts from).
    reference: str = ""
    # Pack the sides of a micro-batch into rows of train.seq_len tokens, as the reward model does.
    pack: bool = True

    def __post_init__(self) -> None:
        from foresight.align.dpo import DPO_LOSSES

        if self.loss not in DPO_LOSSES:
            raise ValueError(f"loss must be one of {', '.join(DPO_LOSSES)}, not {self.loss!r}")
        if self.beta <= 0:
            raise ValueError(f"beta must be positive, not {self.beta}")
        if not 0.0 <= self.label_smoothing < 0.5 or (self.label_smoothing and self.loss != "sigmoid"):
            raise ValueError("label_smoothing must be in [0, 0.5), and only with loss = 'sigmoid'")


def no_token_budget(train: TrainConfig, section: str) -> None:
    for key in ("tokens", "flops", "tokens_per_param"):
        if getattr(train, key):
            raise ValueError(f"train.{key} is for pre-training; set {section}.epochs or {section}.steps instead")


@dataclass
class SFTConfig:
    base: str = "smollm2-135m-instruct"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        seq_len=512, batch_size=8, lr=2e-5, schedule="cosine", warmup_fraction=0.05, min_lr_ratio=0.1,
        weight_decay=0.0, beta2=0.999, eval_every=50, checkpoint_every=100))
    sft: SFTOptions = field(default_factory=SFTOptions)

    def __post_init__(self) -> None:
        no_token_budget(self.train, "sft")
        if not self.base.strip():
            raise ValueError("base is empty: name the model to fine-tune (e.g. smollm2-135m-instruct or a run "
                             "directory)")


@dataclass
class RMConfig:
    base: str = "smollm2-135m-instruct"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        seq_len=384, batch_size=8, lr=1e-5, schedule="cosine", warmup_fraction=0.05, min_lr_ratio=0.1,
        weight_decay=0.0, beta2=0.999, eval_every=50, checkpoint_every=100))
    rm: RMOptions = field(default_factory=RMOptions)

    def __post_init__(self) -> None:
        no_token_budget(self.train, "rm")
        if not self.base.strip():
            raise ValueError("base is empty: name the model to start the reward model from")


@dataclass
class DPOConfig:
    base: str = "smollm2-135m-instruct"
    data: AlignDataConfig = field(default_factory=AlignDataConfig)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        seq_len=384, batch_size=8, lr=5e-7, schedule="cosine", warmup_fraction=0.1, min_lr_ratio=0.1,
        weight_decay=0.0, beta2=0.999, eval_every=50, checkpoint_every=100))
    dpo: DPOOptions = field(default_factory=DPOOptions)

    def __post_init__(self) -> None:
        no_token_budget(self.train, "dpo")
        if not self.base.strip():
            raise ValueError("base is empty: name the model to start from (usually an SFT run)")
