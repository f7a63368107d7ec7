"""Held-out visual question answering, beside the two baselines the issue asks for.

Each held-out scene question is asked three ways, all scored by the same code:
- `image`: the model sees the scene (greedy reply);
- `no_image`: the same model, the same question, the image part removed (what it can answer from priors alone);
- `majority`: no model, the most common training answer of that question type.
A reply is right when its first words (as many as the answer has), lower-cased and stripped of punctuation, are
the answer's.
"""

from __future__ import annotations

import collections
import re

import torch

from foresight.data import scenes
from foresight.model.generate import Generation
from foresight.data.images import image_tensor

MAX_REPLY_TOKENS = 8
BATCH = 16


def words(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", text.lower())


def is_right(reply: str, answer: str) -> bool:
    expected = words(answer)
    return words(reply)[:len(expected)] == expected


def majority_answers(kinds: tuple[str, ...], n_train: int = 2000) -> dict[str, str]:
    counts: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for ex in scenes.examples("train", n_train, kinds, ("qa",)):
        counts[ex.task][ex.answer] += 1
    return {task: c.most_common(1)[0][0] for task, c in counts.items()}


@torch.no_grad()
def answer(vlm, tokenizer, questions: list[scenes.SceneExample], with_image: bool) -> list[str]:
    device = vlm.embed.weight.device
    replies = []
    for i in range(0, len(questions), BATCH):
        chunk = questions[i:i + BATCH]
        prompts, images = [], None
        for q in chunk:
            user = q.messages[0]
            if not with_image:
                user = {"role": "user", "content": user["content"][-1]["text"].lstrip("\n")}
            prompts.append(tokenizer.apply_chat_template([user], add_generation_prompt=True))
        if with_image:
            size = vlm.vision.image_size
            images = image_tensor([q.image(size) for q in chunk]).to(device)
        run = Generation(vlm, prompts, max_new_tokens=MAX_REPLY_TOKENS, stop_token_ids=tokenizer.eos_ids,
                         images=images)
        for _ in run:
            pass
        replies += [tokenizer.decode(tokens) for tokens in run.tokens]
    return replies


def evaluate_vqa(vlm, tokenizer, n_scenes: int, kinds: tuple[str, ...], max_questions: int = 0) -> dict:
    """Accuracy per question type (and overall) with the image, without it, and of the majority answer, on the
    questions of held-out scenes 0 .. n_scenes-1 (at most max_questions of them, the first ones; 0 = all)."""
    questions = scenes.examples("heldout", n_scenes, kinds, ("qa",))
    if max_questions:
        questions = questions[:max_questions]
    majority = majority_answers(kinds)
    right: dict[str, dict[str, list[bool]]] = {"image": {}, "no_image": {}, "majority": {}}
    samples = []
    for way in ("image", "no_image"):
        replies = answer(vlm, tokenizer, questions, with_image=way == "image")
        for q, reply in zip(questions, replies):
            right[way].setdefault(q.task, []).append(is_right(reply, q.answer))
            if way == "image" and len(samples) < 12:
                samples.append({"task": q.task, "question": q.messages[0]["content"][-1]["text"].strip(),
                                "answer": q.answer, "reply": reply})
    for q in questions:
        right["majority"].setdefault(q.task, []).append(is_right(majority.get(q.task, ""), q.answer))
    accuracy = {way: {task: sum(v) / len(v) for task, v in sorted(by_task.items())} for way, by_task in right.items()}
    for way, by_task in right.items():
        every = [x for v in by_task.values() for x in v]
        accuracy[way]["all"] = sum(every) / max(len(every), 1)
    counts = {task: len(v) for task, v in sorted(right["image"].items())}
    return {"accuracy": accuracy, "questions": counts, "majority_answers": majority, "samples": samples}
