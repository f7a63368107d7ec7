"""Recipe (b) end to end: a vision-language model trained from scratch on scenes must answer from the image, far
better than the same model with the image removed and than the majority answer; it saves, reloads and resumes."""

import json

import pytest
import torch

from foresight.config import config_from_dict
from foresight.errors import ForesightError
from foresight.vlm.config import VLMConfig

TINY = {
    "base": "scratch", "tokenizer": "bpe:400",
    "model": {"d_model": 64, "n_layers": 2, "n_heads": 4, "max_seq_len": 160, "parametrization": "sp"},
    "vision": {"encoder": "vit", "image_size": 32, "patch_size": 4, "d_model": 48, "n_layers": 1, "n_heads": 4},
    "data": {"kinds": ["single"], "train_scenes": 2000, "heldout_scenes": 40},
    "train": {"seq_len": 128, "batch_size": 16, "lr": 2e-3, "eval_every": 0, "log_every": 100,
              "checkpoint_every": 200, "seed": 0},
    "vlm": {"stage": "all", "steps": 400, "eval_questions": 120},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from foresight.vlm.train import train_vlm

    out = tmp_path_factory.mktemp("vlm") / "run"
    summary = train_vlm(config_from_dict(VLMConfig, TINY), out, progress=False)
    return out, summary


def test_a_tiny_vlm_trained_from_scratch_reads_colours_from_the_image(trained):
    _, summary = trained
    acc = summary["vqa"]["accuracy"]
    # Six colours: from priors alone about 1 in 6 is right; with the image nearly all are.
    assert acc["image"]["colour"] >= 0.8, acc
    assert acc["image"]["colour"] >= acc["no_image"]["colour"] + 0.5, acc
    assert acc["image"]["colour"] >= acc["majority"]["colour"] + 0.5, acc
    assert summary["vqa"]["questions"]["colour"] == 40


def test_the_saved_vlm_reloads_to_the_same_outputs_and_the_cli_scores_it(trained, capsys):
    from foresight.cli import main
    from foresight.data.scenes import examples
    from foresight.vlm.model_io import load_vlm
    from foresight.data.images import image_tensor

    out, summary = trained
    built = load_vlm(out)
    item = examples("heldout", 1, ("single",), ("qa",))[0]
    ids = built.tokenizer.apply_chat_template(item.messages[:1])
    with torch.no_grad():
        logits = built.vlm(torch.tensor([ids]), image_tensor([item.image(32)]))
    assert logits.shape[-1] == built.vlm.cfg.vocab_size
    assert main(["vlm", "eval", str(out), "--scenes", "40"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["accuracy"]["image"]["colour"] == summary["vqa"]["accuracy"]["image"]["colour"]
    with pytest.raises(ForesightError, match="is not a vision-language model"):
        load_vlm(out / "checkpoints")


def test_an_instruct_stage_needs_a_matching_caption_run(trained, tmp_path):
    from foresight.vlm.train import train_vlm

    out, _ = trained
    cfg = config_from_dict(VLMConfig, {**TINY, "vision": {**TINY["vision"], "patch_size": 8},
                                       "vlm": {"stage": "instruct", "init": str(out), "steps": 1}})
    with pytest.raises(ForesightError, match="was trained with vision = .*copy its \\[vision\\] table"):
        train_vlm(cfg, tmp_path / "stage2", progress=False)


def test_an_interrupted_vlm_run_resumes_to_the_same_weights(tmp_path):
    import shutil

    from safetensors.torch import load_file

    from foresight.vlm.train import train_vlm

    short = {**TINY, "data": {**TINY["data"], "train_scenes": 64},
             "train": {**TINY["train"], "checkpoint_every": 3}, "vlm": {"stage": "all", "steps": 6,
                                                                        "eval_questions": 0}}
    cfg = config_from_dict(VLMConfig, short)
    train_vlm(cfg, tmp_path / "full", progress=False)
    cut = tmp_path / "cut"
    shutil.copytree(tmp_path / "full", cut)
    shutil.rmtree(cut / "checkpoints" / "step_00000006")
    (cut / "checkpoints" / "latest").unlink(missing_ok=True)
    shutil.rmtree(cut / "model")
    train_vlm(cfg, cut, resume=True, progress=False)
    for name in ("vision.safetensors", "model.safetensors"):
        a, b = load_file(tmp_path / "full" / "model" / name), load_file(cut / "model" / name)
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name


def test_sample_reads_an_image_file_and_refuses_one_for_a_text_model(trained, tmp_path, capsys):
    from foresight.cli import main
    from foresight.data.scenes import ONE_WORD, examples

    out, _ = trained
    item = next(q for q in examples("heldout", 10, ("single",), ("qa",)) if q.task == "colour")
    path = tmp_path / "scene.png"
    item.image(96).save(path)  # not the model's size: resized on the way in
    question = item.messages[0]["content"][-1]["text"].strip()
    assert question.endswith(ONE_WORD)
    assert main(["sample", str(out), "--image", str(path), "--prompt", question, "--temperature", "0"]) == 0
    assert capsys.readouterr().out.strip() == item.answer
    assert main(["sample", "smollm2-135m-instruct", "--image", str(path), "--prompt", "hi"]) != 0
    assert "is a text-only model: it cannot read --image" in capsys.readouterr().err
    path.write_bytes(path.read_bytes()[:100])  # a truncated PNG
    assert main(["sample", str(out), "--image", str(path), "--prompt", "hi"]) != 0
    assert f"--image {path}: the image cannot be decoded" in capsys.readouterr().err


def test_chat_attaches_an_image_with_a_command_and_answers_from_it(trained, tmp_path, capsys, monkeypatch):
    import io

    from foresight.cli import main
    from foresight.data.scenes import examples

    out, _ = trained
    colour = [q for q in examples("heldout", 12, ("single",), ("qa",)) if q.task == "colour"]
    first, second = colour[0], next(q for q in colour if q.answer != colour[0].answer)
    for name, item in (("a.png", first), ("b.png", second)):
        item.image(32).save(tmp_path / name)
    question = first.messages[0]["content"][-1]["text"].strip()
    lines = [f"/image {tmp_path / 'a.png'}", question, f"/image {tmp_path / 'b.png'}", question,
             f"/image {tmp_path / 'missing.png'}", "/exit"]
    monkeypatch.setattr("sys.stdin", io.StringIO("\n".join(lines) + "\n"))
    assert main(["chat", str(out), "--temperature", "0"]) == 0
    captured = capsys.readouterr()
    assert captured.out.split() == [first.answer, second.answer]  # each reply reads its own message's image
    assert "missing.png: image file not found" in captured.err


def test_the_server_answers_from_a_data_url_image_and_refuses_bad_ones(trained, tmp_path):
    import base64
    import io

    import httpx
    import openai
    from serving import running_server

    from foresight.data.scenes import examples

    out, _ = trained
    colour = [q for q in examples("heldout", 12, ("single",), ("qa",)) if q.task == "colour"][:3]

    def data_url(item, cut: int = 0) -> str:
        buffer = io.BytesIO()
        item.image(64).save(buffer, format="PNG")
        data = buffer.getvalue()
        return "data:image/png;base64," + base64.b64encode(data[:cut] if cut else data).decode()

    def ask(client, item, url=None):
        question = item.messages[0]["content"][-1]["text"].strip()
        content = [{"type": "image_url", "image_url": {"url": url or data_url(item)}},
                   {"type": "text", "text": "\n" + question}]
        reply = client.chat.completions.create(model="vlm", messages=[{"role": "user", "content": content}],
                                               temperature=0, max_tokens=8)
        return reply.choices[0].message.content

    with running_server("--model-id", "vlm", model=str(out)) as (url, _):
        client = openai.OpenAI(base_url=url + "/v1", api_key="none", max_retries=0)
        assert [ask(client, item).strip() for item in colour] == [item.answer for item in colour]
        bad = {"https://example.com/cat.png": ("image_url_not_fetched", "not fetched"),
               "data:image/png;base64,@@@": (None, "not valid base64"),
               data_url(colour[0], cut=120): (None, "the image cannot be decoded")}
        for bad_url, (code, message) in bad.items():
            with pytest.raises(openai.BadRequestError) as caught:
                ask(client, colour[0], bad_url)
            error = caught.value.body
            assert error["param"].startswith("messages[0].content[0]") and message in error["message"], error
            assert code is None or error["code"] == code
        # Still serving, and text-only requests still work.
        assert ask(client, colour[1]).strip() == colour[1].answer
        text_only = httpx.post(url + "/v1/chat/completions", json={
            "model": "vlm", "max_tokens": 4, "messages": [{"role": "user", "content": "hello"}]})
        assert text_only.status_code == 200


def test_the_chat_page_uploads_an_image_and_shows_the_answer(trained, tmp_path):
    """Debian's Chromium, driven by Playwright, on a loopback-only network (tests/test_chat_page.py's set-up)."""
    import importlib.util
    import os
    import subprocess
    import sys
    from pathlib import Path

    from chat_page_check import CHROMIUM
    from test_chat_page import _netns_prefix

    from foresight.data.scenes import examples

    if not os.access(CHROMIUM, os.X_OK) or importlib.util.find_spec("playwright") is None:
        pytest.skip(f"needs {CHROMIUM} and playwright (scripts/test.sh installs both as root)")
    out, _ = trained
    item = next(q for q in examples("heldout", 12, ("single",), ("qa",)) if q.task == "colour")
    image = tmp_path / "shape.png"
    item.image(48).save(image)
    question = item.messages[0]["content"][-1]["text"].strip()
    driver = Path(__file__).with_name("chat_page_check.py")
    cmd = [*_netns_prefix(), sys.executable, str(driver), "--model", str(out), "--image", str(image),
           "--question", question]
    run = subprocess.run(cmd, capture_output=True, text=True, timeout=240)
    assert run.returncode == 0, f"the driver failed:\n{run.stdout[-3000:]}\n{run.stderr[-6000:]}"
    r = json.loads(run.stdout.strip().splitlines()[-1])
    assert r["attached_label"] == "shape.png" and r["attached_after_send"] is None, r
    assert r["reply"].strip() == item.answer and r["thumbnails"] == 1, r
    sent = r["request_bodies"][0]["messages"][-1]["content"]
    assert sent[0]["type"] == "image_url" and sent[0]["image_url"]["url"].startswith("data:image/png;base64,")
    assert sent[1] == {"type": "text", "text": "\n" + question}
    assert r["other_hosts"] == [] and r["page_errors"] == [], r
