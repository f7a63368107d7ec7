"""`foresight sample`, `foresight chat` and `foresight serve`: generate from a MODEL in the terminal or over HTTP.

Each subcommand has its own `_register_<name>(sub)` below; `register` calls them all.
"""

from __future__ import annotations

import argparse
import sys

from foresight.errors import ForesightError
from foresight.weights.commands import model_parser


def register(sub: argparse._SubParsersAction) -> None:
    _register_sample(sub)
    _register_chat(sub)
    _register_serve(sub)


# ----- options shared by sample and chat -----------------------------------------------------------------------------


def _add_sampling_options(p: argparse.ArgumentParser, max_tokens: int) -> None:
    p.add_argument("--max-tokens", type=int, default=None, metavar="N",
                   help=f"most new tokens per reply (default {max_tokens}, or what fits in the context window)")
    p.add_argument("--temperature", type=float, default=0.7, metavar="T", help="0 = greedy (default 0.7)")
    p.add_argument("--top-k", type=int, default=0, metavar="K", help="sample from the K most likely (0 = off)")
    p.add_argument("--top-p", type=float, default=0.95, metavar="P",
                   help="sample from the smallest set with probability >= P (1 = off; default 0.95)")
    p.add_argument("--seed", type=int, default=None, metavar="S", help="random seed (same seed, same text)")
    p.add_argument("--stop", action="append", default=[], metavar="STR",
                   help="end the reply at this string (not printed); repeatable")
    p.set_defaults(default_max_tokens=max_tokens)


def _sampling(args: argparse.Namespace) -> dict:
    import torch

    from foresight.model.generate import check_sampling

    check_sampling(args.temperature, args.top_k, args.top_p)  # before the model is loaded
    # One generator for the whole command, so successive chat replies continue one random stream.
    seed = None if args.seed is None else torch.Generator().manual_seed(args.seed)
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p, "seed": seed,
            "stop": args.stop}


def _max_tokens(args: argparse.Namespace, context: int, prompt_len: int = 0) -> int:
    """--max-tokens as given (Generation refuses it if it does not fit), else the default cut to the room left."""
    if args.max_tokens is not None:
        if args.max_tokens < 1:
            raise ForesightError(f"--max-tokens must be >= 1, not {args.max_tokens}")
        return args.max_tokens
    return max(1, min(args.default_max_tokens, context - prompt_len))


def _write(piece: str) -> None:
    sys.stdout.write(piece)
    sys.stdout.flush()  # show each piece as it is generated


# ----- foresight sample ----------------------------------------------------------------------------------------------


def _register_sample(sub: argparse._SubParsersAction) -> None:
    p = model_parser(
        sub, "sample", "complete a prompt with a model",
        "Print MODEL's continuation of --prompt, as it is generated. With --chat the prompt is one "
        "user turn in the model's chat template and the reply ends at the end-of-turn token.",
    )
    p.add_argument("--prompt", required=True, help="the text to continue (or, with --chat, the user's message)")
    p.add_argument("--chat", action="store_true", help="wrap the prompt as a user turn in the chat template")
    p.add_argument("--system", default=None, help="with --chat: a system message before the user turn")
    p.add_argument("--image", default=None, metavar="PATH",
                   help="an image for a vision-language model (`foresight vlm train`) to read before the prompt "
                        "(implies --chat: the image and the prompt are one user turn)")
    _add_sampling_options(p, max_tokens=256)
    p.set_defaults(func=_sample)


def _sample(args: argparse.Namespace) -> int:
    from foresight.model.generate import encode_prompt, stream_text
    from foresight.weights.load import load_model

    sampling = _sampling(args)
    if args.image is not None:
        return _sample_image(args, sampling)
    if args.system is not None and not args.chat:
        raise ForesightError("--system needs --chat (a plain prompt has no roles)")
    loaded = load_model(args.model, quantize=args.quantize)
    tok = loaded.tokenizer
    if args.chat:
        messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
                   [{"role": "user", "content": args.prompt}]
        prompt = tok.apply_chat_template(messages)
    else:
        prompt = encode_prompt(tok, args.prompt)
    max_new = _max_tokens(args, loaded.model.cfg.max_seq_len, len(prompt))
    for piece in stream_text(loaded.model, tok, prompt, max_new_tokens=max_new, **sampling):
        _write(piece)
    print()
    return 0


def _sample_image(args: argparse.Namespace, sampling: dict) -> int:
    from foresight.data.images import image_tensor, read_image
    from foresight.model.generate import stream_text
    from foresight.vlm.model_io import is_vlm

    image = read_image(args.image, where=f"--image {args.image}")  # before the model is loaded
    if not is_vlm(args.model):  # said before a text model is loaded for nothing
        raise ForesightError(f"{args.model} is a text-only model: it cannot read --image (a model from "
                             f"`foresight vlm train` can)")
    loaded = _chat_model(args)
    messages = ([{"role": "system", "content": args.system}] if args.system else []) + \
        [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\n" + args.prompt}]}]
    prompt = loaded.tokenizer.apply_chat_template(messages)
    images = image_tensor([image], loaded.model.vision.image_size)
    max_new = _max_tokens(args, loaded.model.cfg.max_seq_len, len(prompt))
    for piece in stream_text(loaded.model, loaded.tokenizer, prompt, max_new_tokens=max_new, images=images,
                             **sampling):
        _write(piece)
    print()
    return 0


# ----- foresight chat ------------------------------------------------------------------------------------------------


def _register_chat(sub: argparse._SubParsersAction) -> None:
    p = model_parser(
        sub, "chat", "talk with a chat model in the terminal",
        "A multi-turn chat: each line read from standard input is a user message, and the reply "
        "streams as it is generated. The whole conversation is the context of every reply (the oldest "
        "turns are dropped once it no longer fits). /image PATH attaches an image to the next message (for a "
        "model from `foresight vlm train`). /exit or end of input (Ctrl-D) ends it. With --url, "
        "the model is the one a `foresight serve` (or any OpenAI-compatible server) at URL serves, "
        "reached with the openai client as a user's code would; MODEL then picks among its models.",
        optional=True,
    )
    p.add_argument("--url", default=None, help="chat with the server at this address (e.g. http://127.0.0.1:8000)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="with --url: the server's key (default: FORESIGHT_API_KEY if set)")
    p.add_argument("--system", default=None, help="a system message that starts the conversation")
    _add_sampling_options(p, max_tokens=512)
    p.set_defaults(func=_chat)


def _user_lines(name: str):
    """The user's messages from standard input, until /exit or end of input (with a prompt on a terminal)."""
    interactive = sys.stdin.isatty()
    if interactive:
        print(f"chatting with {name}; /exit or Ctrl-D ends", file=sys.stderr)
    while True:
        if interactive:
            print("> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line or line.strip() == "/exit":  # "" is end of input
            return
        if line.strip():
            yield line.rstrip("\n")


def _chat(args: argparse.Namespace) -> int:
    if args.url:
        return _chat_remote(args)
    if args.api_key:
        raise ForesightError("--api-key needs --url (a local model has no key)")
    if not args.model:
        raise ForesightError("give a MODEL to chat with, or --url of a server")
    from foresight.serve.chat import ChatSession

    sampling = _sampling(args)
    loaded = _chat_model(args)
    max_new = _max_tokens(args, loaded.model.cfg.max_seq_len)
    session = ChatSession(loaded, args.system, max_new_tokens=max_new, **sampling)
    for line in _user_lines(loaded.name):
        dropped = session.dropped_turns
        if line.startswith("/image"):  # attach an image to the next message
            try:
                _attach(session, line[len("/image"):].strip(), loaded)
            except ForesightError as e:
                print(f"error: {e}", file=sys.stderr)
            continue
        try:
            for piece in session.reply(line):
                _write(piece)
        except ForesightError as e:  # e.g. one message longer than the context: say so and keep chatting
            print(f"error: {e}", file=sys.stderr)
            continue
        print()
        if session.dropped_turns > dropped:
            print(f"(the conversation outgrew the {loaded.model.cfg.max_seq_len}-token context: the oldest "
                  f"{session.dropped_turns - dropped} messages were left out)", file=sys.stderr)
    return 0


def _chat_model(args: argparse.Namespace, device="cpu"):
    """The model to chat with or serve: a vision-language model (with its image-placeholder tokenizer) or a text
    one."""
    from foresight.vlm.model_io import load_chat_model

    return load_chat_model(args.model, device=device, quantize=args.quantize)


def _attach(session, path: str, loaded) -> None:
    from foresight.data.images import image_tensor, read_image

    if not path:
        raise ForesightError("/image needs a file: /image PATH")
    if not session.reads_images:
        raise ForesightError(f"{loaded.name} reads text only: /image needs a model from `foresight vlm train`")
    image = read_image(path)
    session.attach_image(image_tensor([image], loaded.model.vision.image_size)[0])
    print(f"(image {path} attached to your next message)", file=sys.stderr)


def _chat_remote(args: argparse.Namespace) -> int:
    """The same conversation against a server, through the official openai client's streaming path."""
    import os

    import openai

    from foresight.model.generate import check_sampling

    check_sampling(args.temperature, args.top_k, args.top_p)
    key = args.api_key or os.environ.get("FORESIGHT_API_KEY") or "none"
    client = openai.OpenAI(base_url=args.url.rstrip("/") + "/v1", api_key=key, max_retries=0)

    def error_text(e: openai.APIError) -> str:
        body = e.body if isinstance(e.body, dict) else {}
        return body.get("message") or str(e)

    try:
        model = args.model or client.models.list().data[0].id
    except openai.APIConnectionError:
        raise ForesightError(f"cannot reach a server at {args.url} (is `foresight serve` running there?)") from None
    except openai.APIError as e:
        raise ForesightError(f"{args.url}: {error_text(e)}") from None
    messages = [{"role": "system", "content": args.system}] if args.system else []
    options = {"temperature": args.temperature, "top_p": args.top_p, "seed": args.seed, "stop": args.stop or None,
               "max_tokens": args.max_tokens or args.default_max_tokens}
    if args.top_k:
        options["extra_body"] = {"top_k": args.top_k}
    for line in _user_lines(f"{model} at {args.url}"):
        messages.append({"role": "user", "content": line})
        pieces: list[str] = []
        try:
            stream = client.chat.completions.create(model=model, messages=messages, stream=True, **options)
            for chunk in stream:
                if chunk.choices and chunk.choices[0].delta.content:
                    pieces.append(chunk.choices[0].delta.content)
                    _write(pieces[-1])
        except openai.APIConnectionError:
            raise ForesightError(f"lost the connection to {args.url}") from None
        except openai.APIError as e:  # e.g. the conversation outgrew the context: say so and keep chatting
            print(f"error: {error_text(e)}", file=sys.stderr)
            if not pieces:
                messages.pop()
                continue
        print()
        messages.append({"role": "assistant", "content": "".join(pieces)})
    return 0


# ----- foresight serve -----------------------------------------------------------------------------------------------


def _register_serve(sub: argparse._SubParsersAction) -> None:
    from foresight.cli_args import float_in, int_in

    p = model_parser(
        sub, "serve", "serve a model over an OpenAI-compatible HTTP API, with a chat page",
        "Serve MODEL at http://HOST:PORT: POST /v1/chat/completions and /v1/completions (OpenAI's wire format, "
        "streaming included; the official openai client works with base_url=http://HOST:PORT/v1), "
        "GET /v1/models, /health, /metrics (Prometheus) and a chat page at /. Requests are batched "
        "continuously: up to --max-batch sequences decode together, and up to --max-queue more wait (beyond "
        "that: 429). SIGTERM or Ctrl-C drains: running requests finish, new ones get 503, then it exits 0.",
    )
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_in(1, 65535), default=8000, help="port (default 8000)")
    p.add_argument("--api-key", default=None, metavar="KEY",
                   help="require 'Authorization: Bearer KEY' on /v1/ routes (default: FORESIGHT_API_KEY if set, "
                        "else no key)")
    p.add_argument("--max-batch", type=int_in(1, 1024), default=16, metavar="N",
                   help="most sequences decoding at once (default 16)")
    p.add_argument("--max-queue", type=int_in(0, 100000), default=64, metavar="N",
                   help="most requests waiting for a place in the batch (default 64)")
    p.add_argument("--model-id", default=None, metavar="NAME",
                   help="the name clients use in 'model' (default: the model's own name)")
    p.add_argument("--drain-timeout", type=float_in(0, 3600), default=30.0, metavar="S",
                   help="on SIGTERM, wait this long for running requests to finish (default 30)")
    p.add_argument("--threads", type=int_in(1, 1024), default=None, metavar="N",
                   help="CPU threads for the model (default: PyTorch's choice)")
    p.set_defaults(func=_serve)


def _serve(args: argparse.Namespace) -> int:
    import os

    import torch

    from foresight.serve.api import ServerState, run_server
    from foresight.weights.load import resolve

    resolve(args.model)  # a missing or unreadable MODEL fails here, before the port opens
    if args.threads:
        torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    state = ServerState(args.model_id, args.api_key or os.environ.get("FORESIGHT_API_KEY") or None)
    load = lambda: _chat_model(args, device)  # noqa: E731
    return run_server(load, state, host=args.host, port=args.port,
                      max_batch=args.max_batch, max_queue=args.max_queue, drain_timeout=args.drain_timeout)
