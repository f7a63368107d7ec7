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
    """Refuse the [train] keys that only pre-training honours."""
    for key in ("tokens", "flops", "tokens_per_param"):
        if getattr(train, key):
            raise ValueError(f"train.{key} is for pre-training; set {section}.epochs or {section}.steps instead")
    # these trainers wrap the language model in loss, value or vision modules; sharding or checkpointing their
    # blocks from outside is not built
    if train.parallel != "ddp":
        raise ValueError(f"train.parallel = {train.parallel!r} is for pre-training (foresight train); {section} runs "
                         f"use 'ddp'")
    if train.activation_checkpointing:
        raise ValueError(f"train.activation_checkpointing is for pre-training (foresight train), not {section} runs")


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


@dataclass
class PPOPrompts:
    # The prompts rollouts answer: "behaviour" = the built-in disallowed requests (type "disallowed") and allowed
    # risky-looking ones (type "allowed") of `foresight.align.prompts`, train split (SFT's own requests);
    # "behaviour_rl" = the same goals in phrasings SFT never saw (`prompts.rl_prompts`); or a JSONL file of
    # {"messages": [...], "type": "..."} records (type: a rubric's prompt type, e.g. allowed / disallowed).
    source: str = "behaviour"
    # Held-out prompts answered greedily after every iteration: the refusal rates the logs show (0 = none).
    probe: int = 16
    # Where the probe comes from: "" = the held-out split of `source` (a JSONL file: the file itself), or a source
    # of its own, e.g. "behaviour" (the built-in held-out requests) for a run trained on a file.
    probe_source: str = ""


@dataclass
class PPOOptions:
    # Iterations of: sample `rollouts` replies, score them, then `epochs` passes of `minibatch`-sized updates.
    iterations: int = 10
    rollouts: int = 16
    minibatch: int = 8
    epochs: int = 2
    max_new_tokens: int = 64
    temperature: float = 1.0
    # PPO: the clip range of the probability ratio and of the value, the value loss's weight, GAE's gamma and lambda.
    clip: float = 0.2
    value_clip: float = 0.2
    value_coef: float = 0.1
    gamma: float = 1.0
    lam: float = 0.95
    # The per-token KL penalty to the reference: estimator k1 or k3, its coefficient, and an adaptive controller
    # when kl_target > 0 (Ziegler et al.: the coefficient follows the measured KL toward the target).
    kl_estimator: str = "k1"
    kl_coef: float = 0.05
    kl_target: float = 0.0
    kl_horizon: int = 10000
    whiten_rewards: bool = False
    # Whiten the advantages over each iteration's rollouts (the usual PPO choice). Off keeps their scale: when most
    # replies earn nearly the same reward, whitening blows their tiny differences up to full-size updates.
    whiten_advantages: bool = True
    # Added to the score of a reply that hit max_new_tokens without ending (InstructGPT-style length control).
    no_end_penalty: float = -1.0
    # The reward model (a `foresight align rm` run; "" = none) and its weight.
    reward_model: str = ""
    reward_model_weight: float = 1.0
    # A rule-based reward model: a rubric YAML graded zero-shot by `grader` ("" = the policy's starting model), or,
    # with grader_head, by a classification head on the grader's hidden state (a file written by
    # scripts/judge_agreement.py --head --save-head; the grader is then the model the head was trained on).
    rubric: str = ""
    rubric_weight: float = 1.0
    grader: str = ""
    calibrate_grader: bool = True
    grader_head: str = ""
    # Export the weights of the iteration (the starting model included) whose greedy replies to the probe prompts
    # score highest under the reward mix, not the last iteration's: a stopping rule on held-out prompts, for runs
    # that pass through the balance they are after and overshoot it. Point prompts.probe_source at prompts that
    # are neither trained on nor used by the evals you report (e.g. a validation split from
    # scripts/hard_prompts.py --validation-share).
    keep_best: bool = False
    # Export the mean of the policy's weights at the end of each of the last `average_last` iterations (tail
    # averaging; 0 = the last iteration's weights): for a policy that swings between over- and under-refusing from
    # one iteration to the next, the average sits between the swings (fine-tuned weights from one start average
    # well, as in model soups and WARP).
    average_last: int = 0

    def __post_init__(self) -> None:
        from foresight.align.ppo_math import KL_ESTIMATORS

        if self.kl_estimator not in KL_ESTIMATORS:
            raise ValueError(f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}, not {self.kl_estimator!r}")
        for key in ("iterations", "rollouts", "minibatch", "epochs", "max_new_tokens", "kl_horizon"):
            if getattr(self, key) < 1:
                raise ValueError(f"{key} must be at least 1, not {getattr(self, key)}")
        if self.rollouts % self.minibatch:
            raise ValueError(f"rollouts ({self.rollouts}) must be a multiple of minibatch ({self.minibatch})")
        if self.kl_coef < 0 or self.kl_target < 0 or self.temperature <= 0:
            raise ValueError("kl_coef and kl_target must be >= 0 and temperature > 0")
        if self.grader_head and not self.rubric:
            raise ValueError("grader_head needs a rubric (ppo.rubric): the head reads the rubric's grading turn")
        if not 0 < self.clip < 1 or self.value_clip <= 0 or not 0 <= self.lam <= 1 or not 0 < self.gamma <= 1:
            raise ValueError("clip must be in (0, 1), value_clip > 0, lam in [0, 1] and gamma in (0, 1]")

    @property
    def updates_per_iteration(self) -> int:
        return self.epochs * self.rollouts // self.minibatch


@dataclass
class PPOConfig:
    # The policy's starting point (usually an SFT run); the frozen reference is the same model.
    base: str = "smollm2-135m-instruct"
    prompts: PPOPrompts = field(default_factory=PPOPrompts)
    # Plain reward callables mixed by weight: [{name = "refusal_rules", weight = 1.0}, {name = "pkg.mod:fn"}]
    # (`foresight.align.rewards`).
    rewards: list[dict] = field(default_factory=list)
    train: TrainConfig = field(default_factory=lambda: TrainConfig(
        seq_len=512, batch_size=8, lr=1e-6, schedule="constant", warmup_fraction=0.0, weight_decay=0.0,
        beta2=0.999, checkpoint_every=0))
    ppo: PPOOptions = field(default_factory=PPOOptions)

    def __post_init__(self) -> None:
        no_token_budget(self.train, "ppo")
        if not self.base.strip():
            raise ValueError("base is empty: name the policy's starting model (usually an SFT run)")
        if not (self.rewards or self.ppo.reward_model or self.ppo.rubric):
            raise ValueError("no reward: set ppo.reward_model, ppo.rubric or [[rewards]]")
        if self.ppo.average_last and self.ppo.keep_best:
            raise ValueError("ppo.average_last and ppo.keep_best both choose the exported weights: set one")
        if not 0 <= self.ppo.average_last <= self.ppo.iterations:
            raise ValueError(f"ppo.average_last must be between 0 and ppo.iterations ({self.ppo.iterations}), "
                             f"not {self.ppo.average_last}")
        if self.ppo.keep_best and self.prompts.probe < 1:
            raise ValueError("ppo.keep_best picks an iteration by its probe score: set prompts.probe >= 1")
        per = self.ppo.updates_per_iteration
        if self.train.checkpoint_every % per:
            raise ValueError(f"train.checkpoint_every ({self.train.checkpoint_every}) must be a multiple of the "
                             f"updates per iteration ({per} = ppo.epochs x ppo.rollouts / ppo.minibatch), so a "
                             f"resumed run starts an iteration afresh")
