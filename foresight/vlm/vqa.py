"""Held-out visual question answering of a vision-language model in memory, through the evaluation harness.

The harness's image tasks (foresight/evals/tasks: vqa for the scenes, mnist, fashion_mnist, tuxpaint) with their
options set to a run's data config (its scene kinds and held-out counts), so the end of `foresight vlm train` and
`foresight vlm eval` score exactly what `foresight eval RUN --tasks vqa,...` scores: each question with the image,
with it removed, and the majority training answer, by the same scorer.
"""

from __future__ import annotations

from foresight.data.prepare import default_root
from foresight.evals.lm import EvalModel
from foresight.evals.runner import run_task
from foresight.evals.spec import get_task
from foresight.vlm.config import VLMDataConfig

WAYS = {"image": "exact_match", "no_image": "exact_match_no_image", "majority": "exact_match_majority"}


def evaluate_vqa(vlm, tokenizer, data: VLMDataConfig, max_questions: int = 0) -> dict:
    """Accuracy per question type (and overall) with the image, without it, and of the majority answer, on the
    questions about `data`'s held-out scenes and each of its labelled sets' held-out images (at most max_questions
    questions of each source, the first ones; 0 = all)."""
    from foresight.weights.load import LoadedModel

    loaded = LoadedModel(vlm, tokenizer, "vlm", "tuned", None)
    model = EvalModel("in-memory vlm", device=str(vlm.embed.weight.device), loaded=loaded)
    tasks = []
    if data.kinds and data.heldout_scenes:
        tasks.append(("vqa", {"kinds": list(data.kinds), "n": data.heldout_scenes}))
    if data.set_heldout:
        tasks += [(name, {"n": data.set_heldout}) for name in data.sets]
    accuracy: dict[str, dict[str, float]] = {way: {} for way in WAYS}
    counts, majority, samples = {}, {}, []
    right = {way: 0.0 for way in WAYS}
    for name, options in tasks:
        result = run_task(model, get_task(name), default_root() / "cache", limit=max_questions or None,
                          options=options, progress=False)
        by_type = result["groups"] or {name: {"n": result["n"], **result["metrics"]}}
        for qtype, group in by_type.items():
            counts[qtype] = group["n"]
            for way, metric in WAYS.items():
                accuracy[way][qtype] = group[metric]
                right[way] += group[metric] * group["n"]
        for item in result["items"]:
            majority.setdefault(item.get("group", name), item["majority"]["answer"])
            if len(samples) < 12 or item.get("group", name) not in {s["task"] for s in samples}:
                samples.append({"task": item.get("group", name), "question": item["messages"][-1]["content"][-1][
                    "text"].strip(), "reply": item["completions"][0], "right": item["passed"][0]})
    total = sum(counts.values())
    for way in WAYS:
        accuracy[way] = dict(sorted(accuracy[way].items())) | {"all": right[way] / max(total, 1)}
    return {"accuracy": accuracy, "questions": dict(sorted(counts.items())), "majority_answers": majority,
            "samples": samples}
