"""Running tasks: items -> prompts -> requests -> the model's answers -> per-item records and summaries.

Prompts, for multiple_choice (the layout of lm-evaluation-harness, so the two score identical strings):

    context = preamble + (example + delimiter + example's answer + separator) * shots + prompt
    request = (context, delimiter + choice), one per choice

--limit N keeps N scored items per task, taken round-robin over the task's groups (subjects) in a fixed order, so a
limited MMLU run still covers every subject; a task without groups keeps its first N items.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path

from foresight.errors import ForesightError
from foresight.evals import metrics
from foresight.evals.lm import EvalModel, GenerateChat, GenerateUntil, Loglikelihood, LoglikelihoodRolling
from foresight.evals.loaders import load_items
from foresight.evals.spec import TaskSpec, render


def _sha1(text: str) -> str:
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def split_pool(spec: TaskSpec, items: list[dict]) -> tuple[dict[str, list[dict]], list[dict]]:
    """({group: few-shot examples}, items to score). first_per_group: each group's first max_shots items are its
    examples and are never scored."""
    if spec.fewshot.pool != "first_per_group":
        return {}, items
    pool: dict[str, list[dict]] = {}
    scored = []
    for item in items:
        examples = pool.setdefault(item[spec.group_by], [])
        if len(examples) < spec.fewshot.max_shots:
            examples.append(item)
        else:
            scored.append(item)
    return pool, scored


def limit_items(spec: TaskSpec, items: list[dict], limit: int | None) -> list[dict]:
    if limit is None or limit >= len(items):
        return items
    if not spec.group_by:
        return items[:limit]
    groups: dict[str, list[dict]] = {}
    for item in items:
        groups.setdefault(str(item[spec.group_by]), []).append(item)
    queues = [groups[g] for g in sorted(groups)]
    chosen, depth = [], 0
    while len(chosen) < limit:
        for q in queues:
            if depth < len(q) and len(chosen) < limit:
                chosen.append(q[depth])
        depth += 1
    order = {id(it): i for i, it in enumerate(items)}
    return sorted(chosen, key=lambda it: order[id(it)])


def choice_texts(spec: TaskSpec, item: dict) -> list[str]:
    if isinstance(spec.choices, list):
        return [render(c, item, spec, f"choices[{i}]") for i, c in enumerate(spec.choices)]
    if spec.choices not in item or not isinstance(item[spec.choices], list):
        raise ForesightError(f"{spec.path}: field 'choices': items have no list field {spec.choices!r}")
    return [str(c) for c in item[spec.choices]]


def answer_index(spec: TaskSpec, item: dict, n_choices: int) -> int:
    value = item.get(spec.target)
    if not isinstance(value, int) or not 0 <= value < n_choices:
        raise ForesightError(f"{spec.path}: field 'target': item {item['id']!r} has {spec.target}={value!r}, not "
                             f"an index into its {n_choices} choices")
    return value


def build_context(spec: TaskSpec, item: dict, examples: list[dict]) -> tuple[str, int]:
    """(context, length of its part shared with every item of the same group: preamble + examples)."""
    parts = [render(spec.preamble, item, spec, "preamble")]
    for ex in examples:
        answer = choice_texts(spec, ex)[answer_index(spec, ex, len(choice_texts(spec, ex)))]
        parts.append(render(spec.prompt, ex, spec, "prompt") + spec.target_delimiter + answer
                     + spec.fewshot.separator)
    shared = "".join(parts)
    return shared + render(spec.prompt, item, spec, "prompt"), len(shared)


# ----- one task ------------------------------------------------------------------------------------------------------


def run_task(model: EvalModel, spec: TaskSpec, cache_dir: Path, shots: int | None = None,
             limit: int | None = None, options: dict | None = None, progress: bool = True) -> dict:
    """Evaluate one task; returns {"task", "request", "shots", "n", "metrics", "groups", "items", ...}."""
    t0 = time.time()
    k = spec.fewshot.shots if shots is None else shots
    if k > spec.fewshot.max_shots:
        if spec.fewshot.max_shots == 0:
            k = 0  # a task without examples runs zero-shot whatever --shots says (the result records it)
        else:
            raise ForesightError(f"--shots {k}: task {spec.name} has at most {spec.fewshot.max_shots} examples "
                                 f"per {spec.group_by or 'item'} ({spec.path}, fewshot.max_shots)")
    source_options = {**spec.source.options, **(options or {})}
    items = load_items(spec.source.loader, cache_dir, source_options, spec.path)
    pool, scored = split_pool(spec, items)
    scored = limit_items(spec, scored, limit)
    if not scored:
        raise ForesightError(f"task {spec.name}: no items to score")
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(desc=spec.name, unit=" req", mininterval=1.0, dynamic_ncols=True)
    try:
        if spec.request == "multiple_choice":
            result = _multiple_choice(model, spec, scored, pool, k, bar)
        elif spec.request == "loglikelihood_rolling":
            result = _rolling(model, spec, scored, bar)
        elif spec.chat:
            result = _chat(model, spec, scored, bar)
        else:
            result = _generation(model, spec, scored, bar)
    finally:
        if bar is not None:
            bar.close()
    return {"task": spec.name, "request": spec.request, "shots": k, "n": len(scored),
            "source": {"loader": spec.source.loader, "artifact": spec.source.artifact, "options": source_options},
            "spec": {"path": Path(spec.path).name, "sha256": hashlib.sha256(Path(spec.path).read_bytes()).hexdigest()},
            "description": spec.description, "better": spec.better(), **result, "seconds": round(time.time() - t0, 2)}


def _multiple_choice(model: EvalModel, spec: TaskSpec, items: list[dict], pool: dict, k: int, bar) -> dict:
    requests, layout = [], []
    for item in items:
        examples = pool.get(item[spec.group_by], [])[:k] if pool else []
        context, shared = build_context(spec, item, examples)
        choices = choice_texts(spec, item)
        layout.append((item, context, choices, answer_index(spec, item, len(choices)), len(requests)))
        requests += [Loglikelihood(context, spec.target_delimiter + c, shared) for c in choices]
    if bar is not None:
        bar.reset(total=len(requests))
    answers = model.loglikelihood(requests, progress=bar)
    records = []
    for item, context, choices, answer, start in layout:
        logprobs = [answers[start + i][0] for i in range(len(choices))]
        prediction = max(range(len(choices)), key=lambda i: logprobs[i])
        # acc_norm: log-likelihood per character of the choice, which does not favour short answers.
        norm = max(range(len(choices)), key=lambda i: logprobs[i] / max(len(choices[i]), 1))
        record = {"id": item["id"], "prompt_sha1": _sha1(context), "answer": answer, "prediction": prediction,
                  "correct": prediction == answer, "correct_norm": norm == answer,
                  "logprobs": [round(x, 5) for x in logprobs], "probs": [round(p, 5) for p in metrics.softmax(logprobs)]}
        if spec.group_by:
            record["group"] = item[spec.group_by]
        records.append(record)
    summary = _accuracy(records, spec)
    groups = {}
    if spec.group_by:
        for g in sorted({r["group"] for r in records}):
            members = [r for r in records if r["group"] == g]
            groups[g] = {"n": len(members), **_accuracy(members, spec)}
    if spec.calibration:
        from foresight.evals.calibration import calibration

        cal = calibration(records)
        summary["ece"] = cal["ece"]
        summary["ece_top"] = cal["ece_top"]
    else:
        cal = None
    out = {"metrics": summary, "groups": groups, "example_prompt": layout[0][1], "items": records}
    if cal is not None:
        out["calibration"] = cal
    return out


def _accuracy(records: list[dict], spec: TaskSpec) -> dict:
    acc, err = metrics.mean_stderr([r["correct"] for r in records])
    out = {"acc": acc, "acc_stderr": err}
    if "acc_norm" in spec.metrics:
        out["acc_norm"], out["acc_norm_stderr"] = metrics.mean_stderr([r["correct_norm"] for r in records])
    return out


def _rolling(model: EvalModel, spec: TaskSpec, items: list[dict], bar) -> dict:
    texts = [render(spec.prompt, item, spec, "prompt") for item in items]
    if bar is not None:
        bar.reset(total=len(texts))
    answers = model.loglikelihood_rolling([LoglikelihoodRolling(t) for t in texts], progress=bar)
    records = []
    for item, text, (logprob, n_tokens) in zip(items, texts, answers):
        n_bytes = len(text.encode())
        records.append({"id": item["id"], "logprob": round(logprob, 4), "tokens": n_tokens, "bytes": n_bytes,
                        "bits_per_byte": metrics.bits_per_byte(logprob, n_bytes) if n_bytes else None})
    total_lp = sum(r["logprob"] for r in records)
    total_bytes = sum(r["bytes"] for r in records)
    total_tokens = sum(r["tokens"] for r in records)
    summary = {"bits_per_byte": metrics.bits_per_byte(total_lp, total_bytes), "bytes": total_bytes,
               "tokens": total_tokens, "nats_per_token": -total_lp / max(total_tokens, 1)}
    return {"metrics": summary, "groups": {}, "items": records}


def _generation(model: EvalModel, spec: TaskSpec, items: list[dict], bar) -> dict:
    from foresight.evals.scorers import SCORERS

    g = spec.generation
    requests = []
    for item in items:
        context = render(spec.preamble, item, spec, "preamble") + render(spec.prompt, item, spec, "prompt")
        requests += [GenerateUntil(context, tuple(g.stop), g.max_new_tokens, g.temperature, g.top_p, seed)
                     for seed in range(g.samples)]
    if bar is not None:
        bar.reset(total=len(requests))
    completions = model.generate_until(requests, progress=bar)
    records, counts = [], []
    for j, item in enumerate(items):
        mine = completions[j * g.samples: (j + 1) * g.samples]
        passed = SCORERS[spec.scorer](item, mine)
        counts.append(sum(passed))
        records.append({"id": item["id"], "prompt_sha1": _sha1(requests[j * g.samples].context), "completions": mine,
                        "passed": passed, "correct": bool(passed[0])})
    summary = _verdict_metrics(spec, records)
    if "pass_at_k" in spec.metrics:
        from foresight.evals.passk import mean_pass_at_k

        for k in g.k:
            summary[f"pass@{k}"] = float(mean_pass_at_k(g.samples, counts, k))
    return {"metrics": summary, "groups": {}, "example_prompt": requests[0].context, "items": records}


def chat_messages(spec: TaskSpec, item: dict, with_image: bool = True) -> list[dict]:
    """The conversation a chat task puts to the model for one item: an optional system message and the user's
    (for an image task, the image then the prompt, as image-text training writes it; `with_image` False gives the
    image-removed baseline's plain prompt)."""
    from foresight.data.scenes import image_turn

    system = render(spec.system, item, spec, "system") if spec.system else ""
    prompt = render(spec.prompt, item, spec, "prompt")
    user = image_turn(prompt) if spec.image and with_image else {"role": "user", "content": prompt}
    return ([{"role": "system", "content": system}] if system else []) + [user]


def _require_chat_template(model: EvalModel, spec: TaskSpec) -> None:
    from foresight.evals.lm import NoChatTemplate

    try:
        model.require_chat_template()
    except NoChatTemplate as e:
        raise ForesightError(f"task {spec.name} is a chat task ({spec.path}: chat: true), but {e}") from None


def _require_images(model: EvalModel, spec: TaskSpec) -> int:
    size = model.image_size
    if size is None:
        raise ForesightError(f"task {spec.name} asks about images ({spec.path}: image: {spec.image}), but model "
                             f"{model.spec} reads text only (a model from `foresight vlm train` reads images)")
    return size


def _chat(model: EvalModel, spec: TaskSpec, items: list[dict], bar) -> dict:
    """A chat task: each item's conversation rendered with the model's chat template, the reply generated by the
    serving engine (batched), then judged by the scorer hook (one verdict per sample). An image task asks each
    item again with the image removed, and scores the majority answer too: the baselines beside the result."""
    from foresight.data.images import image_tensor
    from foresight.evals.scorers import LABELS, SCORERS

    g = spec.generation
    _require_chat_template(model, spec)
    ways = [True, False] if spec.image else [True]
    size = _require_images(model, spec) if spec.image else None
    conversations = {way: [chat_messages(spec, item, way) for item in items] for way in ways}
    prompts = {way: [model.chat_prompt(m) for m in conversations[way]] for way in ways}
    requests = []
    for way in ways:
        for item, p in zip(items, prompts[way]):
            image = image_tensor([item[spec.image](size)], size) if spec.image and way else None
            requests += [GenerateChat(tuple(p), g.max_new_tokens, g.temperature, g.top_p, seed, tuple(g.stop),
                                      image) for seed in range(g.samples)]
    if bar is not None:
        bar.reset(total=len(requests))
    replies = model.generate_chat(requests, progress=bar)
    n = len(items) * g.samples
    records = []
    for j, (item, messages, prompt) in enumerate(zip(items, conversations[True], prompts[True])):
        mine = replies[j * g.samples: (j + 1) * g.samples]
        passed = [bool(v) for v in SCORERS[spec.scorer](item, mine)]
        text = model.tokenizer.decode(prompt)
        record = {"id": item["id"], "prompt_sha1": _sha1(text), "messages": messages, "prompt": text,
                  "completions": mine, "passed": passed, "empty": [not c.strip() for c in mine]}
        if spec.image:
            blind = replies[n + j * g.samples: n + (j + 1) * g.samples]
            record["no_image"] = {"completions": blind,
                                  "passed": [bool(v) for v in SCORERS[spec.scorer](item, blind)]}
            if spec.majority:
                record["majority"] = {"answer": item[spec.majority],
                                      "passed": bool(SCORERS[spec.scorer](item, [item[spec.majority]])[0])}
        if spec.scorer in LABELS:
            record["labels"] = LABELS[spec.scorer](item, mine)
        if spec.group_by:
            record["group"] = item[spec.group_by]
        records.append(record)
    summary = _verdict_metrics(spec, records)
    groups = {}
    if spec.group_by:
        for name in sorted({r["group"] for r in records}, key=str):
            members = [r for r in records if r["group"] == name]
            groups[name] = {"n": len(members), **_verdict_metrics(spec, members)}
    return {"metrics": summary, "groups": groups, "example_prompt": records[0]["prompt"], "items": records}


def _verdict_metrics(spec: TaskSpec, records: list[dict]) -> dict:
    """Metrics that are the mean of the scorer's verdicts: exact_match (first sample), compliance (the reply obeys
    the rule) and refusal_rate (the judge says it refuses), both over every sample; for chat tasks, the count of
    empty replies (which fail every rule and are not refusals)."""
    verdicts = [v for r in records for v in r["passed"]]
    out = {}
    if "exact_match" in spec.metrics:  # the first sample's, as it always was
        out["exact_match"], out["exact_match_stderr"] = metrics.mean_stderr([r["passed"][0] for r in records])
        for baseline in ("no_image", "majority"):  # an image task's baselines, by the same scorer
            if baseline in records[0]:
                first = [r[baseline]["passed"] if baseline == "majority" else r[baseline]["passed"][0]
                         for r in records]
                out[f"exact_match_{baseline}"], out[f"exact_match_{baseline}_stderr"] = metrics.mean_stderr(first)
    for name in ("compliance", "refusal_rate"):
        if name in spec.metrics:
            out[name], out[f"{name}_stderr"] = metrics.mean_stderr(verdicts)
    if spec.chat:
        out["empty_replies"] = sum(sum(r["empty"]) for r in records)
    return out


# ----- several tasks -------------------------------------------------------------------------------------------------


def evaluate(model: EvalModel, specs: list[TaskSpec], cache_dir: Path, shots: int | None = None,
             limit: int | None = None, text: str | None = None, progress: bool = True) -> dict:
    """Run every task on one model; the results.json content (foresight.evals.results describes it)."""
    import foresight

    t0 = time.time()
    tasks = {}
    for spec in specs:  # a chat (or image) task on a model that cannot take it fails before any task runs
        if spec.chat:
            _require_chat_template(model, spec)
        if spec.image:
            _require_images(model, spec)
    for spec in specs:
        options = {"path": text} if text and spec.source.loader == "text" else None
        tasks[spec.name] = run_task(model, spec, cache_dir, shots, limit, options, progress)
    return {
        "model": {"spec": model.spec, "identity": model.identity, "dtype": model.dtype, "device": model.device,
                  "quantize": model.quantize},
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "foresight_version": getattr(foresight, "__version__", None),
        "settings": {"shots": shots, "limit": limit, "batch_tokens": model.batch_tokens},
        "requests": dict(model.stats),
        "seconds": round(time.time() - t0, 2),
        "tasks": tasks,
    }
