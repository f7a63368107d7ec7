"""Rewards for RL fine-tuning as plain callables, and their weighted mix (issue 21).

Every reward has one shape, the one TRL's and OpenRLHF's reward functions have:

    fn(prompts: list[str], responses: list[str], **meta) -> list[float]

`meta` carries per-rollout lists the caller knows (`prompt_types`: "disallowed" / "allowed" for the safety
prompts, and anything else a prompt set records); a reward ignores what it does not use. A config names each
reward and its weight:

    [[rewards]]
    name = "refusal_rules"                 # a built-in (REGISTRY) ...
    weight = 1.0
    [[rewards]]
    name = "my_project.rewards:brevity"    # ... or any importable "module:function"
    weight = 0.2

and `RewardMix` sums them, keeping each source's values for the logs (the report's RBRM reward and the reward
model's are logged apart).
"""

from __future__ import annotations

import importlib
import math
from dataclasses import dataclass
from typing import Callable

from foresight.align.judge import is_refusal
from foresight.errors import ForesightError

RewardFn = Callable[..., list[float]]


def refusal_rules(prompts: list[str], responses: list[str], prompt_types: list[str] | None = None, **meta
                  ) -> list[float]:
    """+1 for refusing a disallowed request or answering an allowed one, -1 otherwise, by the phrase-rule judge
    (`align.judge.is_refusal`, 96% agreement with hand labels): the report's RBRM reward without a grading model."""
    if prompt_types is None:
        raise ForesightError("the refusal_rules reward needs each prompt's type (prompt_types: disallowed/allowed)")
    out = []
    for ptype, response in zip(prompt_types, responses):
        if ptype not in ("disallowed", "allowed"):
            raise ForesightError(f"refusal_rules: prompt type must be 'disallowed' or 'allowed', not {ptype!r}")
        out.append(1.0 if is_refusal(response) == (ptype == "disallowed") else -1.0)
    return out


REGISTRY: dict[str, RewardFn] = {"refusal_rules": refusal_rules}


def load_reward(name: str, where: str = "reward") -> RewardFn:
    """A built-in reward by name, or a callable named "module:function"; a ForesightError naming `where` if not."""
    if name in REGISTRY:
        return REGISTRY[name]
    if ":" not in name:
        raise ForesightError(f"{where}: unknown reward {name!r} (built-in: {', '.join(REGISTRY)}; or "
                             f"'module:function' for your own)")
    module_name, _, attr = name.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise ForesightError(f"{where}: cannot import {module_name!r} ({e})") from None
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ForesightError(f"{where}: {module_name!r} has no callable {attr!r}")
    return fn


@dataclass
class WeightedReward:
    name: str
    weight: float
    fn: RewardFn


class RewardMix:
    """The weighted sum of several rewards; `__call__` returns the totals and each source's raw values."""

    def __init__(self, rewards: list[WeightedReward]):
        if not rewards:
            raise ForesightError("no rewards: name at least one")
        self.rewards = rewards

    @staticmethod
    def from_config(entries: list[dict], where: str = "rewards") -> "RewardMix":
        parts = []
        for i, entry in enumerate(entries):
            here = f"{where}[{i}]"
            unknown = sorted(set(entry) - {"name", "weight"})
            if unknown:
                raise ForesightError(f"{here}.{unknown[0]}: unknown key (keys: name, weight)")
            if not isinstance(entry.get("name"), str) or not entry["name"]:
                raise ForesightError(f"{here}.name: missing (a built-in reward or 'module:function')")
            weight = entry.get("weight", 1.0)
            if isinstance(weight, bool) or not isinstance(weight, (int, float)) or not math.isfinite(weight):
                raise ForesightError(f"{here}.weight: must be a finite number, not {weight!r}")
            parts.append(WeightedReward(entry["name"], float(weight), load_reward(entry["name"], f"{here}.name")))
        return RewardMix(parts)

    def __call__(self, prompts: list[str], responses: list[str], **meta) -> tuple[list[float], dict[str, list[float]]]:
        totals = [0.0] * len(prompts)
        sources = {}
        for part in self.rewards:
            values = [float(v) for v in part.fn(prompts, responses, **meta)]
            if len(values) != len(prompts):
                raise ForesightError(f"reward {part.name} returned {len(values)} values for {len(prompts)} responses")
            bad = [v for v in values if not math.isfinite(v)]
            if bad:
                raise ForesightError(f"reward {part.name} returned a non-finite value ({bad[0]})")
            sources[part.name] = values
            totals = [t + part.weight * v for t, v in zip(totals, values)]
        return totals, sources
