"""RLHF with PPO: `foresight align ppo CONFIG --out RUN` (issue 21).

Each iteration, on the shared training loop:

1. Rollouts: `ppo.rollouts` prompts (a seeded draw) answered by the policy through the serving engine's continuous
   batching (`serve.engine.Engine.generate`, the project's one generation path), sampled at `ppo.temperature`, each
   with its own seed, at most `ppo.max_new_tokens` tokens. A reply that ended gets its end-of-turn token, so the
   policy is trained to stop.
2. Scores, one per reply: the weighted sum of the reward model (`ppo.reward_model`), the rule-based reward model
   (`ppo.rubric`, graded zero-shot, `align.rbrm`), any plain reward callables (`[[rewards]]`, `align.rewards`), and
   `ppo.no_end_penalty` for a reply that never ended. Each source is logged apart.
3. One forward pass of the policy (log-probabilities, values) and of the frozen reference over every reply token;
   per-token rewards = -kl_coef x KL (k1 or k3) plus the score on the last token; GAE; advantages whitened unless
   `ppo.whiten_advantages` is off (`align.ppo_math`).
4. `ppo.epochs` passes over the rollouts in minibatches of `ppo.minibatch`: the clipped policy loss plus
   `ppo.value_coef` x the clipped value loss, one optimizer step each (the loop's steps are these updates).

The value head is a linear layer on the policy's final-norm hidden state (a shared body, as InstructGPT's PPO and
TRL's value-head models have). After each iteration's last update the loop's evaluation logs the iteration: the
mean score and each source's, KL to the reference, entropy, clip fraction, value loss, reply length, the share of
replies that ended, the seconds spent generating and scoring the rollouts, and refusal rates of the greedy
replies to `prompts.probe` held-out prompts by the phrase judge (`align.judge`) and their mean score under the
reward mix. Every rollout is written out as text with its scores (RUN/rollouts.jsonl), to read what the
reward is paying for; with `ppo.keep_best` the run exports the weights of the iteration (the start included) whose probe
score was highest, kept in RUN/best as an atomic checkpoint; with `ppo.average_last` N, the mean of the weights
at the end of the last N iterations (RUN/average, a running mean). The adaptive KL coefficient lives
in a buffer of the module, so checkpoints carry it; checkpoints fall on iteration boundaries (the config checks),
and an iteration's rollouts are a function of the weights and the iteration number, so --resume continues exactly.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from foresight.align import run as align_run
from foresight.align.config import PPOConfig, PPOPrompts
from foresight.align.judge import is_refusal
from foresight.align.ppo_math import (AdaptiveKLController, gae, kl_per_token, masked_mean, policy_loss,
                                      token_rewards, value_loss, whiten)
from foresight.align.replies import ReplyBatch, replies_batch, reply_hidden_states, token_logprobs
from foresight.align.rewards import RewardMix, WeightedReward
from foresight.errors import ForesightError
from foresight.files import jsonl_objects
from foresight.train.distributed import DistInfo
from foresight.train.checkpoint import load_latest, save_checkpoint
from foresight.train.loop import train_loop
from foresight.train.optim import build_optimizer

PROMPT_TYPES = {"refusal": "disallowed", "over_refusal": "allowed"}
BEST_DIR = "best"  # ppo.keep_best: the weights of the iteration whose probe replies scored highest
AVERAGE_DIR = "average"  # ppo.average_last: the running mean of the weights over the last iterations
ROLLOUTS_LOG = "rollouts.jsonl"  # every rollout as text with its scores, a row per reply, keyed by step like metrics


@dataclass
class Prompt:
    messages: list[dict]  # the conversation before the reply (system and user turns)
    ptype: str  # e.g. "disallowed" / "allowed": which rubric row and which refusal rate it counts toward

    @property
    def text(self) -> str:
        return self.messages[-1]["content"]


def load_prompts(cfg: PPOPrompts, split: str) -> list[Prompt]:
    """The built-in behaviour prompts of a split, or the records of a JSONL file (the same file for both splits).
    "behaviour_rl" trains on the same requests in phrasings SFT never saw (`prompts.rl_prompts`) and probes with the
    held-out split like "behaviour"."""
    if cfg.source == "behaviour_rl" and split == "train":
        from foresight.align import prompts

        return [Prompt([{"role": "user", "content": item["user"]}], PROMPT_TYPES[item["kind"]])
                for item in prompts.rl_prompts()]
    if cfg.source in ("behaviour", "behaviour_rl"):
        from foresight.align import prompts

        out = [Prompt([{"role": "user", "content": item["user"]}], PROMPT_TYPES["refusal"])
               for item in prompts.refusal_prompts(split)]
        return out + [Prompt([{"role": "user", "content": item["user"]}], PROMPT_TYPES["over_refusal"])
                      for item in prompts.over_refusal_prompts(split)]
    path = Path(cfg.source)
    if not path.is_file():
        raise ForesightError(f"prompts.source: no such file {path} (or 'behaviour' / 'behaviour_rl' for the "
                             f"built-in prompts)")
    out = []
    for n, record in jsonl_objects(path, 'with "messages" and "type"'):
        messages = record.get("messages")
        if not (isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages)
                and messages[-1].get("role") == "user" and isinstance(messages[-1].get("content"), str)):
            raise ForesightError(f"{path}:{n}: messages must be a list of turns ending with the user's")
        if not isinstance(record.get("type"), str) or not record["type"]:
            raise ForesightError(f"{path}:{n}: type is missing (a prompt type, e.g. allowed or disallowed)")
        out.append(Prompt(messages, record["type"]))
    if not out:
        raise ForesightError(f"{path}: no prompts")
    return out


def probe_prompts(cfg: PPOPrompts) -> list[Prompt]:
    """The prompts the probe draws from: the held-out split of `prompts.probe_source`, or of `prompts.source`."""
    return load_prompts(dataclasses.replace(cfg, source=cfg.probe_source or cfg.source), "heldout")


class PolicyWithValue(nn.Module):
    """The policy language model and a value head on its final-norm hidden states; the KL coefficient as a buffer
    (so checkpoints carry the adaptive controller's state)."""

    def __init__(self, lm: nn.Module, kl_coef: float):
        super().__init__()
        self.lm = lm
        self.value_head = nn.Linear(lm.cfg.d_model, 1)
        nn.init.zeros_(self.value_head.weight)
        nn.init.zeros_(self.value_head.bias)
        self.register_buffer("kl_coef", torch.tensor(float(kl_coef)))

    def param_groups(self, weight_decay: float) -> list[dict]:
        return self.lm.param_groups(weight_decay) + [
            {"name": "value_head", "params": list(self.value_head.parameters()), "lr_mult": 1.0,
             "weight_decay": 0.0}]

    def forward(self, batch: ReplyBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(log-probability, value, entropy) at every reply token of the batch, aligned with batch.targets."""
        hidden = reply_hidden_states(self.lm, batch)
        logp_all = torch.log_softmax(self.lm.logits(hidden).float(), -1)
        logps = logp_all.gather(-1, batch.targets[:, None]).squeeze(-1)
        entropy = -(logp_all.exp() * logp_all).sum(-1)
        return logps, self.value_head(hidden.float()).squeeze(-1), entropy


@dataclass
class Iteration:
    """One iteration's rollouts and what the updates read from them ([rollouts, longest reply] tensors)."""
    seqs: list[list[int]]
    starts: list[int]
    old_logps: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor
    stats: dict
    samples: list[dict]  # the rollouts as text, with their scores: a row each in RUN/rollouts.jsonl
    updates: list[dict] = field(default_factory=list)


@dataclass
class Minibatch:
    replies: ReplyBatch
    old_logps: torch.Tensor
    old_values: torch.Tensor
    advantages: torch.Tensor
    returns: torch.Tensor


def reward_mix(cfg: PPOConfig, reference: nn.Module, tokenizer, device) -> RewardMix:
    """Every configured reward source in one weighted mix: the [[rewards]] callables, the reward model and the
    rule-based reward model (each a reward callable of the same shape)."""
    opts = cfg.ppo
    parts = RewardMix.from_config(cfg.rewards).rewards if cfg.rewards else []
    if opts.reward_model:
        from foresight.align.rm import RewardModelReward

        parts.append(WeightedReward("reward_model", opts.reward_model_weight,
                                    RewardModelReward(opts.reward_model, device)))
    if opts.rubric:
        from foresight.align.rbrm import RBRM, load_head, load_rubric

        head = load_head(opts.grader_head) if opts.grader_head else None
        grader_spec = opts.grader
        if head is not None:
            if opts.grader and opts.grader != head.grader:
                raise ForesightError(f"ppo.grader ({opts.grader}) is not the model ppo.grader_head "
                                     f"({opts.grader_head}) was trained on ({head.grader}): leave ppo.grader empty")
            grader_spec = head.grader
        if grader_spec:
            grader = align_run.load_base(grader_spec, device)
            grader_model, grader_tok = grader.model.eval().requires_grad_(False), grader.tokenizer
        else:  # the policy's starting model, frozen: the reference
            grader_model, grader_tok = reference, tokenizer
        parts.append(WeightedReward("rbrm", opts.rubric_weight, RBRM(load_rubric(opts.rubric), grader_model,
                                                                     grader_tok, calibrate=opts.calibrate_grader,
                                                                     head=head)))
    return RewardMix(parts)


def generate(lm: nn.Module, tokenizer, prompt_ids: list[list[int]], max_new_tokens: int, temperature: float,
             seeds: list[int]) -> list[tuple[list[int], str, bool]]:
    """(reply ids, reply text, ended) for each prompt, through the serving engine."""
    from foresight.serve.engine import Engine, SamplingParams

    was = lm.training
    lm.eval()
    engine = Engine(lm, tokenizer, max_batch=max(1, len(prompt_ids)), max_queue=len(prompt_ids)).start()
    try:
        outputs = engine.generate(prompt_ids, [SamplingParams(max_new_tokens, temperature, seed=s) for s in seeds])
    finally:
        engine.stop()
        lm.train(was)
    replies = []
    for outs in outputs:
        if outs and outs[-1].finish_reason == "error":
            raise ForesightError(f"rollout generation failed: {outs[-1].error}")
        ids = [t for o in outs for t in o.token_ids]
        ended = bool(outs) and outs[-1].finish_reason == "stop"
        replies.append((ids + ([tokenizer.eos_ids[0]] if ended else []), "".join(o.text for o in outs), ended))
    return replies


def refusal_rates(prompts: list[Prompt], replies: list[str]) -> dict[str, float]:
    """The share of replies the phrase judge calls refusals, per prompt type."""
    out = {}
    for ptype in sorted({p.ptype for p in prompts}):
        flags = [is_refusal(r) for p, r in zip(prompts, replies) if p.ptype == ptype]
        out[f"refusal_rate/{ptype}"] = float(np.mean(flags))
    return out


def train_ppo(cfg: PPOConfig, out: Path, resume: bool = False, progress: bool = True) -> dict:
    return align_run.run_with_processes(cfg, _train_ppo, out, resume, progress)


def _train_ppo(cfg: PPOConfig, out: Path, resume: bool, progress: bool, info: DistInfo) -> dict:
    if info.world_size > 1:
        raise ForesightError("foresight align ppo runs in one process (rollouts and updates on one device)")
    t, opts = cfg.train, cfg.ppo
    device, autocast = align_run.start(cfg, PPOConfig, out, resume, info)
    t0 = time.time()
    loaded = align_run.load_base(cfg.base, device)
    tokenizer, lm = loaded.tokenizer, loaded.model
    reference = align_run.load_base(cfg.base, device).model.eval().requires_grad_(False)
    rewards = reward_mix(cfg, reference, tokenizer, device)
    room = lm.cfg.max_seq_len - opts.max_new_tokens

    def encoded(prompts: list[Prompt]) -> list[tuple[Prompt, list[int]]]:
        pairs = [(p, tokenizer.apply_chat_template(p.messages)) for p in prompts]
        return [(p, ids) for p, ids in pairs if len(ids) <= room]

    train_prompts = encoded(load_prompts(cfg.prompts, "train"))
    if not train_prompts:
        raise ForesightError(f"no prompt leaves room for {opts.max_new_tokens} new tokens in the model's context "
                             f"({lm.cfg.max_seq_len})")
    probe = encoded(probe_prompts(cfg.prompts))
    probe = [probe[i] for i in np.random.default_rng([t.seed, 1]).permutation(len(probe))[:cfg.prompts.probe]]
    per_iteration = opts.updates_per_iteration
    steps = opts.iterations * per_iteration
    print(f"ppo: {len(train_prompts)} prompts, {opts.iterations} iterations of {opts.rollouts} rollouts "
          f"(<= {opts.max_new_tokens} new tokens), {opts.epochs} epochs of minibatches of {opts.minibatch} = "
          f"{steps} updates; rewards: {', '.join(_reward_names(cfg))}")

    torch.manual_seed(t.seed)
    model = PolicyWithValue(lm, opts.kl_coef).to(device)
    state: dict = {"iteration": None}

    def score_probe() -> dict:
        """Greedy replies to the probe: their refusal rates (the phrase judge) and mean score (the reward mix)."""
        started = time.perf_counter()
        greedy = generate(lm, tokenizer, [ids for _, ids in probe], opts.max_new_tokens, 0.0, [0] * len(probe))
        prompts, texts = [p for p, _ in probe], [text for _, text, _ in greedy]
        scores, _ = rewards([p.text for p in prompts], texts, prompt_types=[p.ptype for p in prompts],
                            messages=[p.messages for p in prompts])
        score = np.mean([s + (0.0 if ended else opts.no_end_penalty) for s, (_, _, ended) in zip(scores, greedy)])
        return ({f"probe_{k}": v for k, v in refusal_rates(prompts, texts).items()}
                | {"probe_score": float(score), "probe_seconds": time.perf_counter() - started})

    def keep_if_best(iteration: int, step: int, metrics: dict) -> None:
        """Save the weights as the run's best (ppo.keep_best) when their probe score beats the best so far."""
        best = load_latest(out / BEST_DIR, warn=False)
        if best is None or metrics["probe_score"] > best.state["probe_score"]:
            save_checkpoint(out / BEST_DIR, step, model.state_dict(), None,
                            {"step": step, "iteration": iteration, "probe_score": metrics["probe_score"]}, keep=1)
            print(f"ppo: iteration {iteration} is the best so far (probe score {metrics['probe_score']:.3f})")

    def add_to_average(iteration: int, step: int) -> None:
        """Fold this iteration's weights into the running mean in RUN/average (ppo.average_last). An iteration
        already in the mean (a run resumed from a checkpoint older than the mean) is not added twice."""
        average = load_latest(out / AVERAGE_DIR, warn=False)
        if average is not None and average.state["iteration"] >= iteration:
            return
        n = 0 if average is None else average.state["count"]
        mean = {k: v.detach().float().cpu().clone() for k, v in model.state_dict().items()}
        if average is not None:
            mean = {k: (average.model_state[k] * n + mean[k]) / (n + 1) if k in average.model_state else mean[k]
                    for k in mean}
        save_checkpoint(out / AVERAGE_DIR, step, mean, None, {"step": step, "iteration": iteration, "count": n + 1},
                        keep=1)

    if opts.keep_best and probe and load_latest(out / BEST_DIR, warn=False) is None:
        keep_if_best(0, 0, score_probe())  # the starting model is a candidate too

    def rollout(iteration: int) -> Iteration:
        rng = np.random.default_rng([t.seed, 0, iteration])
        chosen = [train_prompts[i] for i in rng.choice(len(train_prompts), opts.rollouts,
                                                       replace=len(train_prompts) < opts.rollouts)]
        seeds = [int(s) for s in rng.integers(0, 2**31, opts.rollouts)]
        t_generate = time.perf_counter()
        replies = generate(lm, tokenizer, [ids for _, ids in chosen], opts.max_new_tokens, opts.temperature, seeds)
        prompts = [p for p, _ in chosen]
        seqs = [ids + reply for (_, ids), (reply, _, _) in zip(chosen, replies)]
        starts = [len(ids) for _, ids in chosen]
        texts = [text for _, text, _ in replies]
        t_score = time.perf_counter()
        scores, by_source = rewards([p.text for p in prompts], texts, prompt_types=[p.ptype for p in prompts],
                                    messages=[p.messages for p in prompts])
        ended = [e for _, _, e in replies]
        scores = [s + (0.0 if e else opts.no_end_penalty) for s, e in zip(scores, ended)]
        t_scored = time.perf_counter()
        batch = replies_batch(seqs, starts).to(device)
        model.eval()
        with torch.no_grad(), autocast:
            logps, values, entropy = model(batch)
            ref_logps = token_logprobs(reference, batch)
        model.train()
        old_logps, mask = batch.padded(logps.float())
        old_values, _ = batch.padded(values.float())
        ref, _ = batch.padded(ref_logps.float())
        kl = kl_per_token(old_logps, ref, opts.kl_estimator) * mask
        score = torch.tensor(scores, device=device)
        rewards_t = token_rewards(score, kl, mask, float(model.kl_coef))
        if opts.whiten_rewards:
            rewards_t = whiten(rewards_t, mask, shift_mean=False)
        advantages, returns = gae(rewards_t, old_values, mask, opts.gamma, opts.lam)
        if opts.whiten_advantages:
            advantages = whiten(advantages, mask)
        stats = {"score": float(np.mean(scores)), "kl": float(kl.sum(1).mean()),
                 "entropy": float(masked_mean(batch.padded(entropy.float())[0], mask)),
                 "reply_tokens": float(mask.sum(1).mean()), "ended": float(np.mean(ended)),
                 "kl_coef": float(model.kl_coef), "rollout_seconds": t_score - t_generate,
                 "score_seconds": t_scored - t_score}
        stats |= {f"score/{name}": float(np.mean(v)) for name, v in by_source.items()}
        stats |= {f"rollout_{k}": v for k, v in refusal_rates(prompts, texts).items()}
        samples = [{"type": p.ptype, "prompt": p.text, "reply": text, "ended": e, "score": s,
                    **{name: v[i] for name, v in by_source.items()}}
                   for i, (p, text, e, s) in enumerate(zip(prompts, texts, ended, scores))]
        return Iteration(seqs, starts, old_logps, old_values, advantages, returns, stats, samples)

    def batch(step: int, m: int) -> Minibatch:
        iteration, update = divmod(step, per_iteration)
        if state["iteration"] is None or state["iteration"][0] != iteration:
            state["iteration"] = (iteration, rollout(iteration))
        it = state["iteration"][1]
        epoch, k = divmod(update, opts.rollouts // opts.minibatch)
        order = np.random.default_rng([t.seed, 2, iteration, epoch]).permutation(opts.rollouts)
        idx = order[k * opts.minibatch:(k + 1) * opts.minibatch].tolist()
        replies = replies_batch([it.seqs[i] for i in idx], [it.starts[i] for i in idx]).to(device)
        pick = torch.tensor(idx, device=device)
        return Minibatch(replies, *(x[pick] for x in (it.old_logps, it.old_values, it.advantages, it.returns)))

    def loss(forward, mb: Minibatch) -> torch.Tensor:
        logps, values, _ = forward(mb.replies)
        width = mb.old_logps.shape[1]
        new_logps, mask = mb.replies.padded(logps, width)
        new_values, _ = mb.replies.padded(values, width)
        pl = policy_loss(new_logps, mb.old_logps, mb.advantages, mask, opts.clip)
        vl, value_clipped = value_loss(new_values, mb.old_values, mb.returns, mask, opts.value_clip)
        state["iteration"][1].updates.append({"policy_loss": pl.loss.item(), "value_loss": vl.item(),
                                              "clip_fraction": pl.clip_fraction.item(),
                                              "approx_kl": pl.approx_kl.item(), "value_clipped": value_clipped.item()})
        return pl.loss + opts.value_coef * vl

    def evaluate() -> dict:
        if state["iteration"] is None:  # a finished run resumed: nothing new to report
            return {}
        it = state["iteration"][1]
        number = it_number(state)
        step = number * per_iteration  # the loop's step after this iteration's last update
        metrics = dict(it.stats)
        if info.is_main:
            with open(out / ROLLOUTS_LOG, "a") as log:
                log.writelines(json.dumps({"step": step, "iteration": number} | row) + "\n" for row in it.samples)
        for key in ("policy_loss", "value_loss", "clip_fraction", "approx_kl", "value_clipped"):
            metrics[key] = float(np.mean([u[key] for u in it.updates])) if it.updates else float("nan")
        if probe:
            metrics |= score_probe()
            if opts.keep_best:
                keep_if_best(number, step, metrics)
        if opts.average_last and number > opts.iterations - opts.average_last:
            add_to_average(number, step)
        if opts.kl_target > 0:
            controller = AdaptiveKLController(float(model.kl_coef), opts.kl_target, opts.kl_horizon)
            model.kl_coef.fill_(controller.update(it.stats["kl"], opts.rollouts))
        return metrics

    mean_len = float(np.mean([len(ids) for _, ids in train_prompts])) + opts.max_new_tokens
    # the loop reports each iteration after its last update
    result = train_loop(model, lambda m: build_optimizer(m, t),
                        cfg=dataclasses.replace(t, eval_every=per_iteration), out=out,
                        steps=steps, accum=1, tokens_per_step=round(opts.minibatch * mean_len), batch=batch,
                        loss=loss, evaluate=evaluate, info=info, device=device, autocast=autocast, resume=resume,
                        progress=progress, step_logs=(ROLLOUTS_LOG,))
    summary = {"base": cfg.base, "iterations": opts.iterations, "updates": steps, "last_iteration": result.metrics,
               "final_train_loss": result.train_loss, "train_seconds": result.train_seconds,
               "wall_seconds": result.wall_seconds, "model": str(out / align_run.MODEL_DIR)}
    best = load_latest(out / BEST_DIR, warn=False) if opts.keep_best else None
    if best is not None:  # export the best iteration's weights, not the last's
        model.load_state_dict(best.model_state, strict=False)  # strict=False: tied weights are stored once
        summary |= {"exported_iteration": best.state["iteration"], "exported_probe_score": best.state["probe_score"]}
    average = load_latest(out / AVERAGE_DIR, warn=False) if opts.average_last else None
    if average is not None:  # export the mean of the last iterations' weights
        current = model.state_dict()
        model.load_state_dict({k: v.to(current[k].dtype) for k, v in average.model_state.items()}, strict=False)
        summary |= {"exported_average_of": average.state["count"]}
    align_run.export_model(loaded, out)
    align_run.write_summary(out, summary)
    shown = ", ".join(f"{k} {v:.3f}" for k, v in result.metrics.items()
                      if k in ("score", "kl") or k.startswith("probe_"))
    exported = (f"; exported iteration {best.state['iteration']} (probe score {best.state['probe_score']:.3f})"
                if best is not None else "")
    if average is not None:
        exported = f"; exported the mean of the last {average.state['count']} iterations' weights"
    print(f"ppo: {time.time() - t0:.0f} s; last iteration: {shown}{exported}; wrote {out}")
    return summary


def it_number(state: dict) -> int:
    """The 1-based number of the iteration whose rollouts are in `state`."""
    return state["iteration"][0] + 1


def _reward_names(cfg: PPOConfig) -> list[str]:
    names = [f"{r.get('name')} x{r.get('weight', 1.0)}" for r in cfg.rewards]
    if cfg.ppo.reward_model:
        names.append(f"reward model {cfg.ppo.reward_model} x{cfg.ppo.reward_model_weight}")
    if cfg.ppo.rubric:
        names.append(f"rubric {cfg.ppo.rubric}" + (f" (head {cfg.ppo.grader_head})" if cfg.ppo.grader_head else "")
                     + f" x{cfg.ppo.rubric_weight}")
    return names + [f"no-end penalty {cfg.ppo.no_end_penalty}"]
