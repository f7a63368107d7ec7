"""The OpenAI wire format: request bodies (validated, every error naming its field), response and stream objects,
and error objects. Nothing here knows about models or the engine: `api.py` turns requests into engine calls.

Limits (answered with 400 or 413 and the limit named):
"""

from __future__ import annotations

import json
import secrets
import time
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

MAX_BODY_BYTES = 4 * 1024 * 1024  # a request body larger than this is refused with 413
MAX_MESSAGES = 1024  # messages in one chat request
MAX_PROMPT_CHARS = 500_000  # characters of text in one request's messages or prompts
MAX_STOP = 4  # stop strings per request (OpenAI's limit)
MAX_TOP_LOGPROBS = 20  # chat top_logprobs (OpenAI's limit); legacy completions allow logprobs up to 5
MAX_PROMPTS = 64  # prompts in one /v1/completions request

__doc__ += f"""
- request body: {MAX_BODY_BYTES // (1024 * 1024)} MiB (413)
- messages per chat request: {MAX_MESSAGES}; characters of text per request: {MAX_PROMPT_CHARS:,}
- prompts per /v1/completions request: {MAX_PROMPTS}; stop strings: {MAX_STOP}; top_logprobs: {MAX_TOP_LOGPROBS}
- n: at most the server's --max-batch; prompt + max_tokens: at most the model's context length
"""


class ApiError(Exception):
    """An error answered to the client as an OpenAI error object with this HTTP status."""

    def __init__(self, status: int, message: str, *, type: str = "invalid_request_error", param: str | None = None,
                 code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type, param, code

    def body(self) -> dict:
        return error_body(self.message, self.type, self.param, self.code)


def error_body(message: str, type: str, param: str | None = None, code: str | None = None) -> dict:
    return {"error": {"message": message, "type": type, "param": param, "code": code}}


# ----- requests ------------------------------------------------------------------------------------------------------


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TextPart(_Strict):
    type: Literal["text"]
    text: str


class ImagePart(BaseModel):
    type: Literal["image_url"]
    model_config = ConfigDict(extra="allow")


class ChatMessage(_Strict):
    role: Literal["system", "developer", "user", "assistant"]
    content: Union[str, list[Union[TextPart, ImagePart]]]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))


class StreamOptions(_Strict):
    include_usage: bool = False


class _Sampling(_Strict):
    """Fields /v1/chat/completions and /v1/completions share."""
    model: str
    temperature: float = Field(1.0, ge=0, le=2)
    top_p: float = Field(1.0, gt=0, le=1)
    top_k: int = Field(0, ge=0)  # not OpenAI's; sent with extra_body={"top_k": K} (0 = off)
    n: int = Field(1, ge=1)
    stop: Union[str, list[str], None] = None
    seed: int | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    logit_bias: dict[str, float] | None = None
    user: str | None = None
    ignore_eos: bool = False  # not OpenAI's (vLLM's): generate max_tokens tokens even past an end-of-text token

    @field_validator("stop")
    @classmethod
    def _stop_list(cls, v):
        stops = [v] if isinstance(v, str) else (v or [])
        if len(stops) > MAX_STOP:
            raise ValueError(f"at most {MAX_STOP} stop strings, not {len(stops)}")
        return stops

    @field_validator("presence_penalty", "frequency_penalty")
    @classmethod
    def _no_penalty(cls, v):
        if v != 0:
            raise ValueError("penalties are not supported by this server (only 0)")
        return v

    @field_validator("logit_bias")
    @classmethod
    def _no_bias(cls, v):
        if v:
            raise ValueError("logit_bias is not supported by this server")
        return v

    @property
    def include_usage(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)


class ChatCompletionRequest(_Sampling):
    messages: list[ChatMessage] = Field(min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool = False
    top_logprobs: int | None = Field(None, ge=0, le=MAX_TOP_LOGPROBS)
    response_format: dict | None = None

    @field_validator("response_format")
    @classmethod
    def _text_only(cls, v):
        if v is not None and v.get("type") != "text":
            raise ValueError("only {'type': 'text'} is supported by this server")
        return v


class CompletionRequest(_Sampling):
    prompt: Union[str, list[str], list[int], list[list[int]]]
    max_tokens: int | None = Field(16, ge=1)  # OpenAI's default for this endpoint
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    best_of: int | None = None
    suffix: str | None = None

    @field_validator("echo")
    @classmethod
    def _no_echo(cls, v):
        if v:
            raise ValueError("echo is not supported by this server")
        return v

    @field_validator("suffix")
    @classmethod
    def _no_suffix(cls, v):
        if v:
            raise ValueError("suffix (insertion) is not supported by this server")
        return v


def _param(loc: tuple) -> str:
    """Pydantic's error location as the JSON path a client would write: messages[0].content."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[int]", "list[str]", "list[list[int]]", "TextPart", "ImagePart", "function-after"):
            continue  # pydantic's name for the branch of a union it tried, not part of the client's field
        else:
            path += ("." if path else "") + str(part)
    return path


def parse_request(raw: bytes, model: type[BaseModel]) -> Any:
    """The validated request, or ApiError(400) naming the bad field (413 for an oversized body)."""
    if len(raw) > MAX_BODY_BYTES:
        raise ApiError(413, f"the request body is {len(raw)} bytes; the limit is {MAX_BODY_BYTES}",
                       code="request_too_large")
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ApiError(400, f"the request body is not valid JSON: {e}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, f"the request body must be a JSON object, not {type(body).__name__}")
    try:
        return model.model_validate(body)
    except ValidationError as e:
        first = e.errors()[0]
        param = _param(first["loc"])
        if first["type"] == "extra_forbidden":
            raise ApiError(400, f"Unrecognized request argument supplied: {param}", param=param) from None
        if first["type"] == "missing":
            raise ApiError(400, f"'{param}' is a required property", param=param) from None
        message = first["msg"].removeprefix("Value error, ")
        raise ApiError(400, f"invalid value for '{param}': {message}", param=param) from None


def check_text(request: ChatCompletionRequest | CompletionRequest, reads_images: bool = False) -> None:
    """Refuse image parts unless the model reads images, and requests with more text than MAX_PROMPT_CHARS."""
    if isinstance(request, ChatCompletionRequest):
        chars = 0
        for i, message in enumerate(request.messages):
            if not isinstance(message.content, str):
                for j, part in enumerate(message.content):
                    if isinstance(part, ImagePart) and not reads_images:
                        raise ApiError(400, "this model reads text only: send a message without image parts, or "
                                            "serve a model from `foresight vlm train`",
                                       param=f"messages[{i}].content[{j}]", code="image_input_unsupported")
            chars += len(message.text())
        field = "messages"
    else:
        prompts = request.prompt if isinstance(request.prompt, list) else [request.prompt]
        chars = sum(len(p) for p in prompts if isinstance(p, str))
        field = "prompt"
    if chars > MAX_PROMPT_CHARS:
        raise ApiError(400, f"the {field} hold {chars:,} characters; the limit is {MAX_PROMPT_CHARS:,}", param=field)


MAX_IMAGE_BYTES = 20_000_000  # an encoded image in a data URL


def image_url_bytes(part: ImagePart, where: str) -> bytes:
    """The encoded image of an `image_url` part: a base64 data URL. This server is offline, so an http(s) URL is
    refused rather than fetched."""
    import base64
    import binascii

    spec = (part.model_extra or {}).get("image_url")
    url = spec.get("url") if isinstance(spec, dict) else spec
    if not isinstance(url, str) or not url:
        raise ApiError(400, "an image_url part needs image_url.url (a data URL)", param=f"{where}.image_url")
    if url.startswith(("http://", "https://")):
        raise ApiError(400, "image URLs are not fetched (this server does not reach the network): send the image "
                            "inline as a data URL, data:image/png;base64,...", param=f"{where}.image_url",
                       code="image_url_not_fetched")
    head, comma, payload = url.partition(",")
    if not (url.startswith("data:image/") and comma and head.endswith(";base64")):
        raise ApiError(400, "image_url.url must be a base64 data URL (data:image/png;base64,...)",
                       param=f"{where}.image_url")
    if len(payload) > MAX_IMAGE_BYTES * 4 // 3 + 4:
        raise ApiError(400, f"the image is larger than {MAX_IMAGE_BYTES:,} bytes", param=f"{where}.image_url")
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError(400, "image_url.url is not valid base64", param=f"{where}.image_url") from None


# ----- responses -----------------------------------------------------------------------------------------------------


def new_id(prefix: str) -> str:
    return f"{prefix}-{secrets.token_hex(12)}"


def now() -> int:
    return int(time.time())


def sse(obj: dict | str) -> str:
    """One server-sent event: `data: <json>` and a blank line."""
    return f"data: {obj if isinstance(obj, str) else json.dumps(obj, ensure_ascii=False)}\n\n"


def usage(prompt_tokens: int, completion_tokens: int) -> dict:
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}


def chat_logprob_entry(token: str, logprob: float, top: list[tuple[str, float]]) -> dict:
    def entry(text: str, value: float) -> dict:
        return {"token": text, "logprob": value, "bytes": list(text.encode("utf-8"))}
    return {**entry(token, logprob), "top_logprobs": [entry(t, v) for t, v in top]}


def model_card(model_id: str, context_length: int, created: int) -> dict:
    return {"id": model_id, "object": "model", "created": created, "owned_by": "foresight",
            "context_length": context_length, "max_model_len": context_length}
