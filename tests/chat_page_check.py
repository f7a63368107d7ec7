"""Drive the chat page of a real `foresight serve` in Debian's Chromium and print what happened as JSON.

    python tests/chat_page_check.py [--url URL] [--screenshot PNG]

Without --url it starts `foresight serve smollm2-135m-instruct --api-key KEY` (tests/serving.py); with --url it uses
a server that is already running with that key. tests/test_chat_page.py runs this inside a network namespace that has
only loopback (Chromium looks up Google hosts on its own) and asserts on the JSON, the last line of stdout.
It checks nothing itself: it records what it saw, so a failing assertion shows the whole story.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
import time
import urllib.request

from serving import running_server  # tests/ is sys.path[0] when this file is run as a script

CHROMIUM = "/usr/bin/chromium"
API_KEY = "chat-page-test-key"
SYSTEM = "You are a helpful assistant."
QUESTION = "What is the capital of France?"
ANSWER_TOKENS = 40  # keeps the greedy answer short: the whole check runs in well under a minute on 2 cores
LONG_PROMPT = "Write a long story about a dragon who learns to cook."
# Playwright passes several of these already; they are listed so the intent does not depend on its defaults.
CHROMIUM_ARGS = [
    "--no-first-run", "--no-default-browser-check", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--disable-default-apps", "--disable-extensions", "--disable-domain-reliability",
    "--disable-client-side-phishing-detection", "--disable-breakpad", "--metrics-recording-only", "--no-pings",
    "--safebrowsing-disable-auto-update", "--dns-prefetch-disable",
    "--disable-features=OptimizationHints,MediaRouter,Translate,AutofillServerCommunication,"
    "CertificateTransparencyComponentUpdater,InterestFeedContentSuggestions",
    # no name is ever resolved: the page is on 127.0.0.1, and anything else Chromium thinks of fails at once
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
]
# Records [milliseconds, length] each time the newest assistant reply changes, to show it grows in steps.
WATCH_GROWTH = """() => {
  window.__growth = [];
  const t0 = performance.now();
  new MutationObserver(() => {
    const replies = document.querySelectorAll('#messages .msg[data-role="assistant"] .content');
    const n = replies.length ? replies[replies.length - 1].textContent.length : 0;
    const g = window.__growth;
    if (!g.length || g[g.length - 1][1] !== n) g.push([Math.round(performance.now() - t0), n]);
  }).observe(document.getElementById('messages'), {childList: true, subtree: true, characterData: true});
}"""
REPLIES = '#messages .msg[data-role="assistant"]'
LAST_REPLY = REPLIES + ":last-child"


def reply_text(page) -> str:
    return page.eval_on_selector(LAST_REPLY + " .content", "e => e.textContent")


def wait_reply(page, n: int, done: bool = True, timeout_ms: float = 120_000) -> None:
    """Wait until the n-th assistant reply exists and is done (or, with done=False, has some text)."""
    page.wait_for_function("""([sel, n, done]) => {
        const r = document.querySelectorAll(sel)[n - 1];
        return r && (done ? r.dataset.done === "true" : r.querySelector(".content").textContent.length > 0);
    }""", arg=[REPLIES, n, done], timeout=timeout_ms)


def running_sequences(url: str) -> float | None:
    """The server's foresight_running_sequences gauge (GET /metrics), or None if it has no such line."""
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        for line in r.read().decode().splitlines():
            if line.startswith("foresight_running_sequences "):
                return float(line.split()[1])
    return None


def controls(page) -> dict:
    return page.evaluate("""() => ({send_disabled: document.getElementById('send').disabled,
                                    stop_disabled: document.getElementById('stop').disabled,
                                    input_disabled: document.getElementById('input').disabled})""")


def check(url: str, screenshot: str | None) -> dict:
    from openai import OpenAI
    from playwright.sync_api import sync_playwright

    out: dict = {"url": url}
    t_start = time.monotonic()
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        console, page_errors, other_hosts, bodies = [], [], [], []
        page.on("console", lambda m: console.append(f"{m.type}: {m.text}") if m.type in ("error", "warning") else None)
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("request", lambda r: other_hosts.append(r.url) if not r.url.startswith(url) else None)
        page.on("request", lambda r: bodies.append(json.loads(r.post_data))
                if r.url.endswith("/v1/chat/completions") else None)

        page.goto(url + "/")
        out["title"] = page.title()
        # No key yet: the model name cannot be listed, and a message is refused; both say why, in the page.
        page.wait_for_selector('#model[data-state="error"]')
        out["model_label_without_key"] = page.text_content("#model")
        page.fill("#system", SYSTEM)
        page.fill("#temperature", "0")
        page.fill("#max_tokens", str(ANSWER_TOKENS))
        page.click("#input")
        page.keyboard.type("line one")
        page.keyboard.press("Shift+Enter")  # a newline, not a send
        page.keyboard.type("line two")
        out["shift_enter_value"] = page.input_value("#input")
        out["messages_after_shift_enter"] = page.locator("#messages .msg").count()
        page.fill("#input", QUESTION)
        page.click("#send")
        page.wait_for_selector("#error:not(:empty)")
        out["error_without_key"] = page.text_content("#error")
        out["input_after_error"] = page.input_value("#input")
        out["messages_after_error"] = page.locator("#messages .msg").count()

        # With the key: the model name appears, and the question is answered, greedily, as it streams.
        page.fill("#api_key", API_KEY)
        page.press("#api_key", "Tab")  # "change" fires: the page lists the models again
        page.wait_for_selector('#model[data-state="ok"]')
        out["model_label"] = page.text_content("#model")
        page.evaluate(WATCH_GROWTH)
        t0 = time.monotonic()
        page.click("#send")
        wait_reply(page, 1)
        out["answer_seconds"] = round(time.monotonic() - t0, 2)
        out["answer_page"] = reply_text(page)
        out["answer_finish"] = page.get_attribute(LAST_REPLY, "data-finish")
        out["answer_growth"] = page.evaluate("window.__growth")
        out["error_after_answer"] = page.text_content("#error")
        if screenshot:
            page.screenshot(path=screenshot)
            out["screenshot"] = screenshot

        client = OpenAI(base_url=url + "/v1", api_key=API_KEY, max_retries=0)
        model_id = client.models.list().data[0].id
        out["model_id"] = model_id
        r = client.chat.completions.create(model=model_id, temperature=0, max_tokens=ANSWER_TOKENS,
                                           messages=[{"role": "system", "content": SYSTEM},
                                                     {"role": "user", "content": QUESTION}])
        out["answer_openai"] = r.choices[0].message.content
        out["answer_openai_finish"] = r.choices[0].finish_reason

        # Stop: a long reply, stopped once text shows; it keeps what came and stops growing, the server stops generating
        # (the page's abort closes the connection), and the page works again.
        page.fill("#max_tokens", "400")
        page.fill("#input", LONG_PROMPT)
        page.click("#send")
        wait_reply(page, 2, done=False)
        out["stop_controls_while_streaming"] = controls(page)
        page.click("#stop")
        t0 = time.monotonic()
        wait_reply(page, 2, timeout_ms=10_000)
        out["stop_seconds"] = round(time.monotonic() - t0, 2)
        stopped = reply_text(page)
        time.sleep(1.0)  # a reply that kept growing would show it by now (the model makes tens of tokens a second)
        out["stop"] = {"text": stopped, "length_after_1s": len(reply_text(page)),
                       "finish": page.get_attribute(LAST_REPLY, "data-finish"), **controls(page),
                       "server_running_sequences": running_sequences(url)}

        # The page is usable again, and it sends the whole conversation, the stopped reply included.
        page.fill("#max_tokens", "8")
        page.fill("#input", "Thanks!")
        t0 = time.monotonic()
        page.press("#input", "Enter")
        wait_reply(page, 3)
        out["followup"] = {"text": reply_text(page), "seconds": round(time.monotonic() - t0, 2),
                           "finish": page.get_attribute(LAST_REPLY, "data-finish"), **controls(page)}
        out["request_bodies"] = bodies
        out["console"] = console
        out["page_errors"] = page_errors
        out["other_hosts"] = other_hosts
        browser.close()
    out["seconds"] = round(time.monotonic() - t_start, 2)
    return out


def check_image(url: str, image: str, question: str, screenshot: str | None) -> dict:
    """Attach `image` with the page's file picker, ask `question` greedily, and record the reply and the request."""
    from playwright.sync_api import sync_playwright

    out: dict = {"url": url}
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1100, "height": 640})
        other_hosts, bodies, page_errors = [], [], []
        page.on("pageerror", lambda e: page_errors.append(str(e)))
        page.on("request", lambda r: other_hosts.append(r.url) if not r.url.startswith(url) else None)
        page.on("request", lambda r: bodies.append(json.loads(r.post_data))
                if r.url.endswith("/v1/chat/completions") else None)
        page.goto(url + "/")
        page.fill("#api_key", API_KEY)
        page.press("#api_key", "Tab")
        page.wait_for_selector('#model[data-state="ok"]')
        page.fill("#temperature", "0")
        page.fill("#max_tokens", "8")
        page.set_input_files("#image", image)
        page.wait_for_selector("#attach[data-file]")
        out["attached_label"] = page.get_attribute("#attach", "data-file")
        page.fill("#input", question)
        page.click("#send")
        wait_reply(page, 1)
        out["reply"] = reply_text(page)
        out["thumbnails"] = page.locator("#messages .msg.user img.attached").count()
        out["attached_after_send"] = page.get_attribute("#attach", "data-file")
        if screenshot:
            page.screenshot(path=screenshot)
        out["request_bodies"] = bodies
        out["other_hosts"] = other_hosts
        out["page_errors"] = page_errors
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--url", help="use this running server (started with --api-key %s)" % API_KEY)
    ap.add_argument("--screenshot", help="save a screenshot of the first answer here")
    ap.add_argument("--model", default=None, help="serve this MODEL instead of the built-in SmolLM2")
    ap.add_argument("--image", default=None, help="check the image upload instead: attach this file and ask --question")
    ap.add_argument("--question", default="What colour is the shape? Answer with one word.")
    args = ap.parse_args()
    t0 = time.monotonic()
    serve = (lambda: running_server("--api-key", API_KEY, model=args.model)) if args.model else \
        (lambda: running_server("--api-key", API_KEY))
    with (contextlib.nullcontext((args.url, None)) if args.url else serve()) as (url, _):
        startup = round(time.monotonic() - t0, 2)
        if args.image:
            out = check_image(url.rstrip("/"), args.image, args.question, args.screenshot)
        else:
            out = check(url.rstrip("/"), args.screenshot)
    out["server_start_seconds"] = startup
    print(json.dumps(out))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
