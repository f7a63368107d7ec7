"""The arithmetic of PPO for language models, apart from any model, sampler or trainer (issue 21).

Every function takes per-token tensors [B, T] over the response tokens of B rollouts, right-padded, with `mask`
1.0 on a response's own tokens and 0.0 on the padding after its end. The recipe is Ziegler et al. (2019) and
Ouyang et al. (2022), as TRL and OpenRLHF implement it:

- the reward of each token is minus a KL penalty to the frozen reference, and the last token also gets the
  sequence's score (reward model, rule-based rewards, the penalty for a response that never ends);
- advantages by generalized advantage estimation (GAE) over the response, whitened over the batch's real tokens;
- a clipped policy-gradient loss and a clipped value loss, means over real tokens.

Two estimators of KL(policy || reference) from a sampled token (Schulman, "Approximating KL divergence", 2020),
with log-ratio d = log pi(x) - log pi_ref(x) of a token x drawn from pi:
    k1 = d                    unbiased, can be negative for a single token
    k3 = (e^-d - 1) + d       unbiased, never negative, lower variance when the two are close
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

KL_ESTIMATORS = ("k1", "k3")


def masked_mean(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return (x * mask).sum() / mask.sum().clamp(min=1.0)


def whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True) -> torch.Tensor:
    """(x - mean) / std over the real tokens (the mean put back when shift_mean is False, as for rewards, whose sign
    means something); padding stays 0."""
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    out = (x - mean) * torch.rsqrt(var + 1e-8)
    if not shift_mean:
        out = out + mean
    return out * mask


def kl_per_token(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """The per-token KL estimate from the sampled tokens' log-probabilities under the policy and the reference."""
    d = logprobs - ref_logprobs
    if estimator == "k1":
        return d
    if estimator == "k3":
        return torch.expm1(-d) + d
    raise ValueError(f"KL estimator must be one of {', '.join(KL_ESTIMATORS)}, not {estimator!r}")


def token_rewards(scores: torch.Tensor, kl: torch.Tensor, mask: torch.Tensor, kl_coef: float) -> torch.Tensor:
    """Per-token rewards: -kl_coef * KL on every real token, plus each rollout's score [B] on its last real token."""
    rewards = -kl_coef * kl * mask
    last = (mask.sum(1).long() - 1).clamp(min=0)
    rewards[torch.arange(len(scores)), last] += scores * (mask.sum(1) > 0)
    return rewards


def gae(rewards: torch.Tensor, values: torch.Tensor, mask: torch.Tensor, gamma: float = 1.0, lam: float = 0.95
        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Generalized advantage estimation, backwards over each response; the value after a response's last token is
    0 (the episode ends there). Returns (advantages, returns = advantages + values), 0 on padding."""
    B, T = rewards.shape
    advantages = torch.zeros_like(rewards)
    running = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    next_value = torch.zeros(B, dtype=rewards.dtype, device=rewards.device)
    for t in reversed(range(T)):
        m = mask[:, t]
        delta = rewards[:, t] + gamma * next_value - values[:, t]
        running = (delta + gamma * lam * running) * m
        advantages[:, t] = running
        next_value = values[:, t] * m  # a padded position hands 0 to the real token before it
    return advantages, (advantages + values) * mask


@dataclass
class PolicyLoss:
    loss: torch.Tensor
    clip_fraction: torch.Tensor  # share of real tokens whose ratio was clipped
    approx_kl: torch.Tensor  # mean k3 between the rollout's policy and the current one (how far this update went)


def policy_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor, mask: torch.Tensor,
                clip: float = 0.2) -> PolicyLoss:
    """PPO's clipped surrogate: mean over real tokens of max(-A r, -A clip(r, 1 - eps, 1 + eps)), r = pi / pi_old."""
    log_ratio = logprobs - old_logprobs
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * ratio.clamp(1.0 - clip, 1.0 + clip)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_fraction = masked_mean((clipped > unclipped).float(), mask)
        approx_kl = masked_mean(torch.expm1(-log_ratio) + log_ratio, mask)
    return PolicyLoss(loss, clip_fraction, approx_kl)


def value_loss(values: torch.Tensor, old_values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor,
               clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """Clipped value loss: 0.5 * mean over real tokens of max((v - R)^2, (v_clipped - R)^2), v_clipped within
    `clip` of the rollout's value. Returns (loss, share of tokens where the clipped term was the larger)."""
    clipped_values = old_values + (values - old_values).clamp(-clip, clip)
    unclipped = (values - returns) ** 2
    clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(unclipped, clipped), mask)
    return loss, masked_mean((clipped > unclipped).float().detach(), mask)


class AdaptiveKLController:
    """Ziegler et al.'s adaptive KL coefficient: nudged so the measured KL tracks a target,
    coef <- coef * (1 + clip(KL / target - 1, -0.2, 0.2) * n / horizon) after a batch of n rollouts."""

    def __init__(self, init_coef: float, target: float, horizon: int):
        if init_coef < 0 or target <= 0 or horizon <= 0:
            raise ValueError("the adaptive KL controller needs init_coef >= 0, target > 0 and horizon > 0")
        self.value, self.target, self.horizon = init_coef, target, horizon

    def update(self, kl: float, n: int) -> float:
        error = min(max(kl / self.target - 1.0, -0.2), 0.2)
        self.value *= 1.0 + error * n / self.horizon
        return self.value
