"""Conversations -> token ids through the model's own chat template, with the assistant's tokens marked.

SFT trains on the assistant's tokens only, so the mask must be exactly right: it is found by rendering the
conversation with the same template `foresight chat` and the server use (the tokenizer's `apply_chat_template`),
never by searching the text for role markers. For assistant message i:

    start = ids of messages[:i] with the generation prompt ("<|im_start|>assistant\\n" in ChatML)
    end   = ids of messages[:i+1] without it

and the assistant's tokens are end[len(start):], up to and including the template's end-of-turn token (what the
model must learn to emit to stop), but not the white space some templates put after it. Both renders must be
prefixes of the whole conversation's ids; a template for which they are not (one that rewrites earlier turns, for
example) is refused rather than trained on with a wrong mask.
"""

from __future__ import annotations

from foresight.errors import ForesightError


def _prefix_of(short: list[int], long: list[int]) -> bool:
    return len(short) <= len(long) and long[:len(short)] == short


def conversation_tokens(tokenizer, messages: list[dict], where: str = "conversation") -> tuple[list[int], list[bool]]:
    """(ids, trained): the conversation rendered by the model's chat template, and for each id whether it is one of
    an assistant message's tokens (its content and its end-of-turn token)."""
    ids = tokenizer.apply_chat_template(messages, add_generation_prompt=False)
    trained = [False] * len(ids)
    eos = set(tokenizer.eos_ids)
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        start = tokenizer.apply_chat_template(messages[:i], add_generation_prompt=True)
        end = tokenizer.apply_chat_template(messages[:i + 1], add_generation_prompt=False)
        if not (_prefix_of(start, end) and _prefix_of(end, ids)):
            raise ForesightError(f"{where}: the chat template does not render message {i} as a continuation of the "
                                 f"messages before it, so the assistant's tokens cannot be marked exactly")
        stop = len(end)
        ends_turn = [j for j in range(len(start), len(end)) if end[j] in eos]
        if ends_turn:  # keep the end-of-turn token, drop the template's separator after it
            stop = ends_turn[-1] + 1
        for j in range(len(start), stop):
            trained[j] = True
    return ids, trained


def reply_tokens(tokenizer, prompt: list[dict], reply: str) -> list[int]:
    """The ids of `prompt` followed by the assistant's `reply` and its end-of-turn token: the sequence a reward
    model scores at its last token."""
    return reply_sequence(tokenizer, prompt, reply)[0]


def reply_sequence(tokenizer, prompt: list[dict], reply: str) -> tuple[list[int], int]:
    """`reply_tokens`, and the index of the reply's first token (where the prompt and the assistant's opening end):
    what DPO and PPO score log-probabilities from."""
    ids, trained = conversation_tokens(tokenizer, [*prompt, {"role": "assistant", "content": reply}])
    marked = [j for j, t in enumerate(trained) if t]
    if not marked:
        return ids, len(ids)
    return ids[:marked[-1] + 1], marked[0]
