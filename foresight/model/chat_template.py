"""Chat templates: rendering a list of {"role", "content"} messages into a chat model's prompt text.

A chat template is a small Jinja program shipped with a chat-tuned model (Hugging Face keeps it in
tokenizer_config.json or chat_template.jinja). `render_chat` renders it in the environment `transformers` uses —
sandboxed Jinja with trim_blocks + lstrip_blocks, the loop-control extension, a `tojson` filter that does not escape
HTML, and the `raise_exception` / `strftime_now` helpers — so that prompts built here are token-for-token the ones
`tokenizer.apply_chat_template` builds, without importing `transformers` at chat or serving time.

Runs trained here have no template until fine-tuning writes one to RUN_DIR/tokenizer/chat_template.jinja;
`CHATML_TEMPLATE` is the format it should use (SmolLM2 and many open models use it too).
"""

from __future__ import annotations

import functools
import json
from datetime import datetime
from pathlib import Path

from foresight.errors import ForesightError

TEMPLATE_FILE = "chat_template.jinja"

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def read_template(directory: Path) -> str | None:
    """The chat template stored in a tokenizer directory as chat_template.jinja, or None if there is none."""
    path = Path(directory) / TEMPLATE_FILE
    return path.read_text() if path.is_file() else None


class _TemplateRaised(Exception):
    """raise_exception() called by a template (e.g. "Conversation roles must alternate user/assistant")."""


@functools.lru_cache(maxsize=16)
def _compile(template: str):
    import jinja2.ext
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    def raise_exception(message):
        raise _TemplateRaised(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        return json.dumps(x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys)

    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True, extensions=[jinja2.ext.loopcontrols])
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)
    return env.from_string(template)


def render_chat(template: str, messages: list[dict], add_generation_prompt: bool = True, **variables) -> str:
    """The prompt text for `messages`. `variables` (e.g. bos_token="<s>", eos_token="</s>") are visible to the
    template, as transformers passes the tokenizer's special tokens."""
    from jinja2 import TemplateError

    if not isinstance(messages, list):
        raise ForesightError(f"messages must be a list of dicts, not {type(messages).__name__}")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or "role" not in m:
            raise ForesightError(f"message {i} must be a dict with 'role' and 'content', not {m!r}")
    try:
        return _compile(template).render(messages=messages, add_generation_prompt=add_generation_prompt,
                                         **variables)
    except _TemplateRaised as e:
        raise ForesightError(f"chat template: {e}") from None
    except TemplateError as e:
        raise ForesightError(f"chat template failed to render: {e}") from None
