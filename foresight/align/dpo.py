"""Direct Preference Optimization (Rafailov et al., 2023): preference pairs trained against a frozen reference,
without a reward model or sampling (issue 21). This module holds the loss; the trainer on the shared loop uses it.

For a pair (chosen y_w, rejected y_l) of replies to one prompt, with log pi(y|x) summed over the reply's tokens
under the policy and the reference:

    implicit reward   r(y) = beta * (log pi(y|x) - log pi_ref(y|x))
    loss              -log sigmoid(r(y_w) - r(y_l))                       ("sigmoid", the paper's)
                      (1 - eps) * that + eps * -log sigmoid(-(...))       (label smoothing eps: conservative DPO)
                      ((r(y_w) - r(y_l)) / beta - 1 / (2 beta))^2          ("ipo", Azar et al. 2023)

the same three TRL's DPOTrainer offers under those names, so its losses can be compared step for step.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

DPO_LOSSES = ("sigmoid", "ipo")


@dataclass
class DPOLoss:
    loss: torch.Tensor  # mean over pairs
    chosen_rewards: torch.Tensor  # [pairs], detached
    rejected_rewards: torch.Tensor  # [pairs], detached

    @property
    def accuracy(self) -> float:
        """Share of pairs whose chosen reply has the larger implicit reward."""
        return (self.chosen_rewards > self.rejected_rewards).float().mean().item()

    @property
    def margin(self) -> float:
        return (self.chosen_rewards - self.rejected_rewards).mean().item()


def dpo_loss(policy_chosen: torch.Tensor, policy_rejected: torch.Tensor, ref_chosen: torch.Tensor,
             ref_rejected: torch.Tensor, beta: float = 0.1, kind: str = "sigmoid", label_smoothing: float = 0.0
             ) -> DPOLoss:
    """The loss from summed reply log-probabilities, each [pairs]."""
    if kind not in DPO_LOSSES:
        raise ValueError(f"DPO loss must be one of {', '.join(DPO_LOSSES)}, not {kind!r}")
    if beta <= 0 or not 0.0 <= label_smoothing < 0.5:
        raise ValueError("DPO needs beta > 0 and 0 <= label_smoothing < 0.5")
    chosen = policy_chosen - ref_chosen
    rejected = policy_rejected - ref_rejected
    logits = chosen - rejected
    if kind == "sigmoid":
        losses = -(1 - label_smoothing) * F.logsigmoid(beta * logits) - label_smoothing * F.logsigmoid(-beta * logits)
    else:
        losses = (logits - 1 / (2 * beta)) ** 2
    return DPOLoss(losses.mean(), (beta * chosen).detach(), (beta * rejected).detach())
