"""The HTTP API: an OpenAI-compatible server (FastAPI) around the engine, plus /health, /metrics and the chat page.

Routes: POST /v1/chat/completions, POST /v1/completions (both with SSE streaming), GET /v1/models[/{id}],
GET /health (503 while the model loads or the server drains, then 200), GET /metrics (Prometheus), GET / (chat page).

Every error is an OpenAI error object with its status (400 bad field or JSON, 401 key, 404 model or route,
413 body, 429 queue full, 503 loading or draining, 500 a bug) and the server keeps serving. `ServerState` holds
what the routes share; `run_server` runs uvicorn and turns SIGTERM into a drain: new requests get 503, running ones
finish (up to a timeout), then the process exits 0.
"""

from __future__ import annotations

import asyncio
import hmac
import sys
import threading
import time
import traceback
from importlib import resources
from typing import AsyncIterator, Callable

from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from foresight.errors import ForesightError
from foresight.serve import protocol as wire
from foresight.serve.engine import ContextTooLong, Engine, EngineClosed, Output, QueueFull, SamplingParams
from foresight.serve.metrics import CONTENT_TYPE, ServingMetrics
from foresight.serve.protocol import ApiError, ChatCompletionRequest, CompletionRequest

_ROUTES = {"/", "/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions"}


class ServerState:
    """What the routes share: the loaded model and engine (None while loading), and the server's status."""

    def __init__(self, model_id: str, api_key: str | None):
        self.model_id, self.api_key = model_id, api_key  # model_id: what clients name in "model"
        self.status = "loading"  # then "ready", "draining" or "failed"
        self.loaded = None
        self.engine: Engine | None = None
        self.created = wire.now()
        self.metrics = ServingMetrics(queue_depth=lambda: self.engine.waiting if self.engine else 0,
                                      running=lambda: self.engine.running if self.engine else 0)

    def ready(self) -> Engine:
        if self.status == "loading":
            raise ApiError(503, "the model is still loading; try again shortly", type="server_error",
                           code="model_loading")
        if self.status != "ready" or self.engine is None:
            raise ApiError(503, "the server is shutting down and takes no new requests", type="server_error",
                           code="shutting_down")
        return self.engine


def error_response(e: ApiError) -> JSONResponse:
    return JSONResponse(e.body(), status_code=e.status)


class Gate:
    """ASGI middleware in front of every route: the API key (on /v1/ routes), the body-size limit, and the
    requests_total metric. Pure ASGI rather than Starlette's BaseHTTPMiddleware so that a streamed response is
    passed through untouched and a client's disconnect still reaches it."""

    def __init__(self, app, state: ServerState):
        self.app, self.state = app, state

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        status = [500]

        async def send_and_count(message):
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        error = self._refusal(scope)
        try:
            if error is not None:
                await error_response(error)(scope, receive, send_and_count)
            else:
                await self.app(scope, receive, send_and_count)
        except Exception:
            # A bug in a route: its 500 error object has been sent, and Starlette re-raises the exception for
            # the server to log; it is logged already (the app's handler), so stop it here and keep serving.
            pass
        finally:
            route = scope["path"] if scope["path"] in _ROUTES else "other"
            self.state.metrics.requests.labels(route, str(status[0])).inc()

    def _refusal(self, scope) -> ApiError | None:
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"0")
        if length.isdigit() and int(length) > wire.MAX_BODY_BYTES:
            return ApiError(413, f"the request body is {int(length)} bytes; the limit is {wire.MAX_BODY_BYTES}",
                            code="request_too_large")
        if self.state.api_key and scope["path"].startswith("/v1/"):
            given = headers.get(b"authorization", b"").decode("latin-1")
            scheme, _, key = given.partition(" ")
            if scheme.lower() != "bearer" or not hmac.compare_digest(key.strip().encode(), self.state.api_key.encode()):
                what = "no API key was given" if not given else "the API key is wrong"
                return ApiError(401, f"{what}: send the server's key as 'Authorization: Bearer KEY'",
                                code="invalid_api_key")
        return None


def build_app(state: ServerState) -> FastAPI:
    app = FastAPI(title="Foresight", docs_url=None, redoc_url=None, openapi_url=None)

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, e: ApiError):
        return error_response(e)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, e: StarletteHTTPException):
        if e.status_code == 404:
            return error_response(ApiError(404, f"no such route: {request.method} {request.url.path}",
                                           code="not_found"))
        if e.status_code == 405:
            return error_response(ApiError(405, f"{request.method} is not allowed on {request.url.path}",
                                           code="method_not_allowed"))
        return error_response(ApiError(e.status_code, str(e.detail)))

    @app.exception_handler(Exception)
    async def _bug(request: Request, e: Exception):
        traceback.print_exc()
        return error_response(ApiError(500, f"internal server error ({type(e).__name__}); the server is still "
                                            "running", type="server_error"))

    @app.get("/", include_in_schema=False)
    async def chat_page():
        page = resources.files("foresight.serve").joinpath("static/chat.html")
        return HTMLResponse(page.read_text(encoding="utf-8"))

    @app.get("/health")
    async def health():
        state.ready()
        return {"status": "ok", "model": state.model_id}

    @app.get("/metrics")
    async def metrics():
        return Response(state.metrics.render(), media_type=CONTENT_TYPE)

    @app.get("/v1/models")
    async def models():
        engine = state.ready()
        return {"object": "list", "data": [wire.model_card(state.model_id, engine.context_length, state.created)]}

    @app.get("/v1/models/{model_id:path}")
    async def model(model_id: str):
        engine = state.ready()
        _check_model(state, model_id)
        return wire.model_card(state.model_id, engine.context_length, state.created)

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = wire.parse_request(await request.body(), ChatCompletionRequest)
        engine = state.ready()
        _check_model(state, body.model)
        reads_images = engine.image_token_id is not None
        wire.check_text(body, reads_images)
        messages, images = _chat_messages(state, body, reads_images)
        try:
            prompt = state.loaded.tokenizer.apply_chat_template(messages)
        except ForesightError as e:
            raise ApiError(400, str(e), param="messages") from None
        logprobs = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        max_tokens = body.max_completion_tokens or body.max_tokens
        run = _Run(state, [prompt], body, max_tokens, logprobs, request, images)
        if body.stream:
            return StreamingResponse(_chat_stream(state, run, body), media_type="text/event-stream")
        outputs = await run.collect()
        choices = []
        for index, outs in enumerate(outputs):
            choice = {"index": index, "message": {"role": "assistant", "content": "".join(o.text for o in outs)},
                      "logprobs": None, "finish_reason": outs[-1].finish_reason}
            if logprobs is not None:
                choice["logprobs"] = {"content": _chat_logprobs(state, outs), "refusal": None}
            choices.append(choice)
        return {"id": run.id, "object": "chat.completion", "created": run.created, "model": state.model_id,
                "system_fingerprint": None, "choices": choices, "usage": run.usage(outputs)}

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = wire.parse_request(await request.body(), CompletionRequest)
        engine = state.ready()
        _check_model(state, body.model)
        wire.check_text(body)
        if body.best_of not in (None, body.n):
            raise ApiError(400, "best_of is not supported by this server (leave it out, or equal to n)",
                           param="best_of")
        prompts = _completion_prompts(state, body.prompt)
        run = _Run(state, prompts, body, body.max_tokens, body.logprobs, request)
        if body.stream:
            return StreamingResponse(_completion_stream(state, run, body), media_type="text/event-stream")
        outputs = await run.collect()
        choices = [{"index": index, "text": "".join(o.text for o in outs), "finish_reason": outs[-1].finish_reason,
                    "logprobs": _legacy_logprobs(state, outs) if body.logprobs is not None else None}
                   for index, outs in enumerate(outputs)]
        return {"id": run.id, "object": "text_completion", "created": run.created, "model": state.model_id,
                "system_fingerprint": None, "choices": choices, "usage": run.usage(outputs)}

    return app


def _check_model(state: ServerState, model_id: str) -> None:
    if model_id != state.model_id:
        raise ApiError(404, f"the model '{model_id}' does not exist; this server serves '{state.model_id}'",
                       param="model", code="model_not_found")


def _chat_messages(state: ServerState, body: ChatCompletionRequest, reads_images: bool):
    """The request's messages for the chat template ("developer" is "system"), and the images they hold decoded
    and sized for the encoder ([k, 3, S, S], or None without any). For a text model every content is its text;
    for a vision-language model the image parts stay in place. A bad image is a 400 naming its part."""
    from foresight.data.images import image_tensor, read_image

    messages, images = [], []
    for i, m in enumerate(body.messages):
        role = "system" if m.role == "developer" else m.role
        if isinstance(m.content, str) or not reads_images:
            messages.append({"role": role, "content": m.text()})
            continue
        parts = []
        for j, part in enumerate(m.content):
            if isinstance(part, wire.ImagePart):
                where = f"messages[{i}].content[{j}]"
                try:
                    images.append(read_image(wire.image_url_bytes(part, where), where=where))
                except ForesightError as e:
                    raise ApiError(400, str(e), param=where) from None
                parts.append({"type": "image"})
            else:
                parts.append({"type": "text", "text": part.text})
        messages.append({"role": role, "content": parts})
    if not images:
        return messages, None
    return messages, image_tensor(images, state.engine.model.vision.image_size)


def _completion_prompts(state: ServerState, prompt) -> list[list[int]]:
    from foresight.model.generate import encode_prompt

    if isinstance(prompt, str):
        prompt = [prompt]
    elif prompt and isinstance(prompt[0], int):
        prompt = [prompt]
    if not prompt:
        raise ApiError(400, "prompt is empty", param="prompt")
    if len(prompt) > wire.MAX_PROMPTS:
        raise ApiError(400, f"at most {wire.MAX_PROMPTS} prompts per request, not {len(prompt)}", param="prompt")
    return [encode_prompt(state.loaded.tokenizer, p) if isinstance(p, str) else list(p) for p in prompt]


class _Run:
    """One HTTP request's prompts (each with n choices) submitted to the engine, with its outputs arriving on an
    asyncio queue as (choice index, Output). Choice index = prompt number * n + choice, as OpenAI numbers them."""

    def __init__(self, state: ServerState, prompts: list[list[int]], body, max_tokens: int | None,
                 logprobs: int | None, request: Request, images=None):
        engine = state.engine
        self.id = wire.new_id("chatcmpl" if isinstance(body, ChatCompletionRequest) else "cmpl")
        self.created = wire.now()
        self.n, self.prompt_tokens, self.request = body.n, sum(len(p) for p in prompts), request
        self.queue: asyncio.Queue[tuple[int, Output]] = asyncio.Queue()
        loop = asyncio.get_running_loop()
        self.handles = []
        try:
            for number, prompt in enumerate(prompts):
                room = engine.context_length - len(prompt)
                params = SamplingParams(
                    max_tokens=max_tokens if max_tokens is not None else max(room, 1),
                    temperature=body.temperature, top_k=body.top_k, top_p=body.top_p, seed=body.seed,
                    stop=tuple(body.stop or ()), stop_token_ids=() if body.ignore_eos else None, logprobs=logprobs)
                offset = number * body.n

                def on_output(out: Output, offset=offset):
                    loop.call_soon_threadsafe(self.queue.put_nowait, (offset + out.index, out))
                self.handles.append(engine.submit(prompt, params, on_output, n=body.n, images=images))
        except BaseException as e:
            self.cancel()
            raise _api_error_from(e) from None
        self.unfinished = len(prompts) * body.n

    def cancel(self) -> None:
        for handle in self.handles:
            handle.cancel()

    async def outputs(self) -> AsyncIterator[tuple[int, Output]]:
        """Every output until each choice has finished; an engine error is raised as ApiError(500)."""
        try:
            while self.unfinished:
                index, out = await self.queue.get()
                if out.finish_reason == "error":
                    raise ApiError(500, out.error or "generation failed", type="server_error")
                if out.finish_reason is not None:
                    self.unfinished -= 1
                yield index, out
        finally:
            self.cancel()  # a no-op once finished; frees the rows if the client went away mid-stream

    async def collect(self) -> list[list[Output]]:
        """All outputs, per choice (non-streaming); cancels the generation if the client disconnects meanwhile."""
        per_choice: list[list[Output]] = [[] for _ in range(len(self.handles) * self.n)]
        stream = self.outputs()
        next_output = asyncio.ensure_future(anext(stream, None))
        try:
            while True:
                done, _ = await asyncio.wait({next_output}, timeout=0.5)
                if not done:
                    if await self.request.is_disconnected():
                        self.cancel()
                        raise ApiError(499, "the client closed the connection")
                    continue
                item = next_output.result()
                if item is None:
                    return per_choice
                per_choice[item[0]].append(item[1])
                next_output = asyncio.ensure_future(anext(stream, None))
        finally:
            next_output.cancel()
            await stream.aclose()

    def usage(self, outputs: list[list[Output]]) -> dict:
        return wire.usage(self.prompt_tokens, sum(len(o.token_ids) for outs in outputs for o in outs))


def _api_error_from(e: BaseException) -> BaseException:
    if isinstance(e, QueueFull):
        return ApiError(429, str(e), type="rate_limit_error", code="queue_full")
    if isinstance(e, EngineClosed):
        return ApiError(503, str(e), type="server_error", code="shutting_down")
    if isinstance(e, ContextTooLong):
        return ApiError(400, str(e), code="context_length_exceeded")
    if isinstance(e, ForesightError):
        return ApiError(400, str(e))
    return e


def _token_text(state: ServerState, token_id: int) -> str:
    return state.loaded.tokenizer.decode([token_id])


def _chat_logprobs(state: ServerState, outs: list[Output]) -> list[dict]:
    return [wire.chat_logprob_entry(_token_text(state, lp.token_id), lp.logprob,
                                    [(_token_text(state, t), v) for t, v in lp.top])
            for o in outs for lp in o.logprobs]


def _legacy_logprobs(state: ServerState, outs: list[Output], offset: int = 0) -> dict:
    tokens, values, tops, offsets = [], [], [], []
    for lp in (lp for o in outs for lp in o.logprobs):
        text = _token_text(state, lp.token_id)
        tokens.append(text)
        values.append(lp.logprob)
        tops.append({_token_text(state, t): v for t, v in lp.top})
        offsets.append(offset)
        offset += len(text)
    return {"tokens": tokens, "token_logprobs": values, "top_logprobs": tops, "text_offset": offsets}


async def _stream_errors(events: AsyncIterator[str]) -> AsyncIterator[str]:
    """Pass SSE events through; an error after the stream has started is sent as an error event (OpenAI's way),
    since the status line has already gone out."""
    try:
        async for event in events:
            yield event
    except ApiError as e:
        yield wire.sse(e.body())


async def _chat_stream(state: ServerState, run: _Run, body: ChatCompletionRequest) -> AsyncIterator[str]:
    def chunk(index: int, delta: dict, finish_reason=None, logprobs=None) -> str:
        obj = {"id": run.id, "object": "chat.completion.chunk", "created": run.created, "model": state.model_id,
               "system_fingerprint": None,
               "choices": [{"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish_reason}]}
        if body.include_usage:
            obj["usage"] = None
        return wire.sse(obj)

    async def events():
        for index in range(run.unfinished):
            yield chunk(index, {"role": "assistant", "content": ""})
        completion_tokens = 0
        async for index, out in run.outputs():
            completion_tokens += len(out.token_ids)
            if out.text or out.logprobs:
                logprobs = {"content": _chat_logprobs(state, [out]), "refusal": None} if out.logprobs else None
                yield chunk(index, {"content": out.text} if out.text else {}, None, logprobs)
            if out.finish_reason is not None:
                yield chunk(index, {}, out.finish_reason)
        if body.include_usage:
            yield wire.sse({"id": run.id, "object": "chat.completion.chunk", "created": run.created,
                            "model": state.model_id, "system_fingerprint": None, "choices": [],
                            "usage": wire.usage(run.prompt_tokens, completion_tokens)})
        yield wire.sse("[DONE]")

    async for event in _stream_errors(events()):
        yield event


async def _completion_stream(state: ServerState, run: _Run, body: CompletionRequest) -> AsyncIterator[str]:
    def chunk(index: int, text: str, finish_reason=None, logprobs=None) -> str:
        obj = {"id": run.id, "object": "text_completion", "created": run.created, "model": state.model_id,
               "system_fingerprint": None,
               "choices": [{"index": index, "text": text, "logprobs": logprobs, "finish_reason": finish_reason}]}
        if body.include_usage:
            obj["usage"] = None
        return wire.sse(obj)

    async def events():
        completion_tokens = 0
        offsets: dict[int, int] = {}
        async for index, out in run.outputs():
            completion_tokens += len(out.token_ids)
            logprobs = None
            if body.logprobs is not None:
                logprobs = _legacy_logprobs(state, [out], offsets.get(index, 0))
                offsets[index] = offsets.get(index, 0) + sum(len(t) for t in logprobs["tokens"])
            if out.text or out.finish_reason is not None or out.logprobs:
                yield chunk(index, out.text, out.finish_reason, logprobs)
        if body.include_usage:
            yield wire.sse({"id": run.id, "object": "text_completion", "created": run.created,
                            "model": state.model_id, "system_fingerprint": None, "choices": [],
                            "usage": wire.usage(run.prompt_tokens, completion_tokens)})
        yield wire.sse("[DONE]")

    async for event in _stream_errors(events()):
        yield event


# ----- running the server --------------------------------------------------------------------------------------------


def run_server(load: Callable[[], object], state: ServerState, *, host: str, port: int, max_batch: int,
               max_queue: int, drain_timeout: float = 30.0) -> int:
    """Serve until SIGTERM/SIGINT: the port opens at once (503 while `load()` runs on a thread), then requests
    are served; a signal drains and the function returns 0 (1 if the model failed to load)."""
    import uvicorn

    app = build_app(state)
    gated = Gate(app, state)
    config = uvicorn.Config(gated, host=host, port=port, log_level="warning", access_log=False,
                            timeout_graceful_shutdown=5, lifespan="off")
    server = _DrainingServer(config, state, drain_timeout)
    failure: list[str] = []

    def load_in_background():
        try:
            loaded = load()
            engine = Engine(loaded.model, loaded.tokenizer, max_batch=max_batch, max_queue=max_queue,
                            metrics=state.metrics).start()
            state.model_id = state.model_id or loaded.name
            state.loaded, state.engine = loaded, engine
            if state.status == "loading":
                state.status = "ready"
            print(f"ready: {state.model_id} at http://{host}:{port} (chat page at /, API at /v1)", flush=True)
        except Exception as e:  # e.g. a broken model file: say why and stop the server
            failure.append(str(e) if isinstance(e, ForesightError) else f"{type(e).__name__}: {e}")
            state.status = "failed"
            server.should_exit = True

    threading.Thread(target=load_in_background, name="foresight-load", daemon=True).start()
    print(f"loading the model; listening on http://{host}:{port} (503 until loaded)", flush=True)
    server.run()
    if state.engine is not None:
        state.engine.stop()
    if failure:
        raise ForesightError(f"could not load the model: {failure[0]}")
    return 0


class _DrainingServer:
    """uvicorn's Server, with a first SIGTERM/SIGINT that drains instead of stopping: the state turns "draining"
    (new requests get 503), the engine finishes what it has (up to `drain_timeout` seconds), then uvicorn exits.
    A second signal stops at once."""

    def __new__(cls, config, state: ServerState, drain_timeout: float):
        import uvicorn

        class Server(uvicorn.Server):
            def handle_exit(self, sig, frame):
                if state.status in ("draining", "failed") or state.engine is None:
                    self.should_exit = True  # (not super(): uvicorn would re-raise the signal, exiting non-zero)
                    return
                state.status = "draining"
                state.engine.close()
                threading.Thread(target=self._drain, daemon=True).start()

            def _drain(self):
                started = time.monotonic()
                finished = state.engine.wait_idle(drain_timeout)
                print(f"drained in {time.monotonic() - started:.1f} s" if finished else
                      f"drain timed out after {drain_timeout:.0f} s; stopping with requests unfinished",
                      file=sys.stderr, flush=True)
                time.sleep(0.2)  # let the last responses' final bytes go out
                self.should_exit = True

        return Server(config)
