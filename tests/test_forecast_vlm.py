"""The image-text forecast (modality = "image-text"): its compute against a hand count, its config's errors, and a
tiny forecast end to end (plan, ladder of `foresight vlm train` runs, fit, register, target, verdict)."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from foresight.errors import ForesightError
from foresight.scaling.ladder import dump_forecast_config, load_forecast_config

REPO = Path(__file__).resolve().parents[1]
CONFIG = REPO / "configs/forecast-vlm.toml"


def _shapes():
    from foresight.model.config import ModelConfig
    from foresight.model.vision import VisionConfig

    # head_dim 8; d_ff = 32 * ceil(8 * 32 / 3 / 32) = 96 (LM) and 32 * ceil(8 * 16 / 3 / 32) = 64 (ViT)
    lm = ModelConfig(vocab_size=50, d_model=32, n_layers=2, n_heads=4, max_seq_len=64, parametrization="mup",
                     mup_base_width=16, mup_base_head_dim=8)
    vision = VisionConfig(encoder="vit", image_size=16, patch_size=8, d_model=16, n_layers=1, n_heads=2)  # 4 tokens
    return lm, vision


def test_image_text_compute_and_parameters_match_a_hand_count():
    import torch

    from foresight.model.transformer import Transformer
    from foresight.model.vlm import VisionLanguageModel
    from foresight.train.flops import image_text_flops, image_text_params

    lm, vision = _shapes()
    # The language model's non-embedding parameters, per layer: qkv 32*(4+2*4)*8 = 3072, out 32*32 = 1024, SwiGLU
    # 3*32*96 = 9216, two norms 64: 13376; two layers and the final norm: 26784.
    lm_non_embedding = 2 * (3072 + 1024 + 9216 + 64) + 32
    # The ViT's block: qkv 16*(2+2*2)*8 = 768, out 256, SwiGLU 3*16*64 = 3072, norms 32; final norm 16: 4144.
    vit_blocks = 768 + 256 + 3072 + 32 + 16
    patch_matmul = 3 * 8 * 8 * 16  # 3072
    # Per conversation of P = 10 input positions (4 of them image tokens), A = 3 trained:
    encoder = 6 * 4 * (patch_matmul + vit_blocks) + 12 * 1 * 16 * 4 * 4  # every patch, forward and backward
    projector = 6 * 4 * (16 * 32 + 32 * 32)  # fc1 and fc2, per image token
    language = 6 * 10 * lm_non_embedding + 12 * 2 * 32 * 10 * 10 + 6 * 3 * 50 * 32  # head on trained positions only
    assert (encoder, projector, language) == (176_256, 36_864, 1_712_640)
    assert image_text_flops(lm, vision, positions=10, trained=3, conversations=7) == 7 * (encoder + projector + language)

    # Parameters: the LM's embeddings 2*50*32 = 3200; projector LayerNorm 2*16, fc1 16*32+32, fc2 32*32+32 = 1632;
    # encoder patch embedding (192+1)*16 = 3088, positions 4*16 = 64, blocks 4144 = 7296.
    assert image_text_params(lm, vision) == (lm_non_embedding + 3200 + 1632 + 7296, lm_non_embedding + 1632 + 7296)
    vlm = VisionLanguageModel(Transformer(lm), vision, image_token_id=49)
    assert image_text_params(lm, vision)[0] == sum(p.numel() for p in vlm.parameters())
    with torch.no_grad():  # and the model these shapes describe runs
        vlm(torch.full((1, 6), 49).index_fill_(1, torch.tensor([4, 5]), 1), torch.rand(1, 3, 16, 16))

    frozen = type(vision)(**{**vision.__dict__, "frozen": True})
    with pytest.raises(ValueError, match="ViT encoder trained with the language model"):
        image_text_flops(lm, frozen, 10, 3, 1)


def test_the_shipped_config_loads_as_an_image_text_forecast_and_round_trips(tmp_path):
    from foresight.scaling.image_text import ImageTextForecastConfig
    from foresight.vlm.config import VLMConfig

    fc = load_forecast_config(CONFIG)
    assert isinstance(fc, ImageTextForecastConfig) and isinstance(fc.target, VLMConfig)
    assert fc.modality == "image-text" and fc.target.model.parametrization == "mup"
    saved = tmp_path / "f.toml"
    saved.write_text(dump_forecast_config(fc))
    assert 'modality = "image-text"' in saved.read_text() and load_forecast_config(saved) == fc
    # a text config dumps as before: no modality key
    assert "modality" not in dump_forecast_config(load_forecast_config(REPO / "configs/forecast-cpu.toml"))


# A valid image-text forecast table, which each case below spoils in one place.
VALID = {"modality": "image-text", "target": {"base": "scratch", "model": {"max_seq_len": 160},
                                              "vlm": {"stage": "all", "steps": 100}}}


@pytest.mark.parametrize("change, expected", [
    ({"target": {"vision": {"patch_sise": 8}}}, "unknown key 'target.vision.patch_sise' (did you mean "
                                                "'target.vision.patch_size'?)"),
    ({"target": {"data": {"corpus": "default"}}}, "unknown key 'target.data.corpus'"),
    ({"target": {"vlm": {"epoch": 2}}}, "unknown key 'target.vlm.epoch' (did you mean 'target.vlm.epochs'?)"),
    ({"ladder": {"rungs": 6}}, "unknown key 'ladder.rungs' (did you mean 'ladder.runs'?)"),
    ({"target": {"base": "smollm2-135m-instruct"}}, "target.base must be 'scratch'"),
    ({"target": {"vlm": {"stage": "caption"}}}, "target.vlm.stage must be 'all'"),
    ({"target": {"vlm": {"steps": 0}}}, "target.vlm.steps must be set"),
    ({"target": {"vision": {"frozen": True}}}, "target.vision must be a ViT that trains"),
    ({"target": {"data": {"heldout_scenes": 0}}}, "target.data.heldout_scenes must be at least 1"),
    ({"forecast": {"capabilities": {"samples": 4}}}, "[forecast.capabilities] measures pass rates"),
])
def test_a_bad_image_text_forecast_config_is_refused_naming_the_key(tmp_path, change, expected):
    import tomli_w

    def merged(base: dict, extra: dict) -> dict:
        return {**base, **{k: merged(base.get(k, {}), v) if isinstance(v, dict) else v for k, v in extra.items()}}

    load_forecast_config(_write(tmp_path / "good.toml", tomli_w.dumps(VALID)))  # the table the cases start from
    bad = _write(tmp_path / "bad.toml", tomli_w.dumps(merged(VALID, change)))
    with pytest.raises(ForesightError) as e:
        load_forecast_config(bad)
    assert expected in str(e.value) and str(e.value).startswith(str(bad)), str(e.value)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_modality_is_checked_and_a_vision_table_needs_it(tmp_path):
    with pytest.raises(ForesightError, match="modality must be 'text' or 'image-text', not 'image'"):
        load_forecast_config(CONFIG, ["modality=image"])
    no_modality = tmp_path / "v.toml"
    no_modality.write_text("\n".join(line for line in CONFIG.read_text().splitlines()
                                     if not line.startswith("modality")))
    with pytest.raises(ForesightError, match="'target.vision'.*set modality = \"image-text\""):
        load_forecast_config(no_modality)
    # and the override picks the schema as the file's key does
    assert load_forecast_config(no_modality, ["modality=image-text"]) == load_forecast_config(CONFIG)


# A forecast small enough for the test suite: 120 training scenes, a 32-wide language model trained for 200 steps
# and five ladder runs of 7 to 107 steps on the smallest width of the dial. It checks the machinery, not the law.
TINY = ["target.data.train_scenes=120", "target.data.heldout_scenes=12", 'target.tokenizer="bpe:300"',
        "target.model.d_model=32", "target.model.n_layers=2", "target.model.n_heads=4",
        "target.vision.image_size=16", "target.vision.d_model=16", "target.vision.n_heads=2",
        "target.train.batch_size=8", "target.train.threads=1", "target.vlm.steps=200",
        "ladder.runs=5", "ladder.min_steps=10", "ladder.min_batch=2", "fit.top_runs=0"]


@pytest.mark.timeout(300)
def test_a_tiny_image_text_forecast_end_to_end_and_resume(tmp_path):
    out = tmp_path / "fc"
    cmd = [sys.executable, "-m", "foresight", "forecast", str(CONFIG), "--out", str(out), "--jobs", "2",
           *[a for o in TINY for a in ("--set", o)]]
    first = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert first.returncode == 0, first.stdout[-2000:] + first.stderr[-3000:]
    assert "target (image-text)" in first.stdout and "predicted held-out image-text loss" in first.stdout

    plan = json.loads((out / "plan.json").read_text())
    assert plan["modality"] == "image-text" and len(plan["runs"]) == 5
    for r in plan["runs"]:  # each ran as `foresight vlm train`, and counted its compute as the plan did
        summary = json.loads((out / "runs" / r["name"] / "summary.json").read_text())
        assert summary["stage"] == "all" and summary["steps"] == r["steps"]
        assert summary["flops"] == pytest.approx(r["compute"], rel=1e-9) and summary["tokens"] == r["tokens"]
        assert summary["params"] == r["params"] and summary["final_val_loss"] == summary["final_heldout_loss"]
        assert (out / "runs" / r["name"] / "model" / "vision.json").is_file()

    result = json.loads((out / "forecast.json").read_text())
    target = json.loads((out / "target" / "summary.json").read_text())
    assert result["modality"] == "image-text" and len(result["ladder"]) == 5
    assert result["actual_loss"] == target["final_heldout_loss"]
    assert result["target_compute"] == pytest.approx(target["flops"], rel=1e-9) == plan["target_compute"]
    assert result["extrapolation"] >= 9.5
    low, high = result["interval"]
    assert low <= result["predicted_loss"] <= high
    assert result["inside_interval"] == (low <= result["actual_loss"] <= high)
    for name in ("loss_vs_compute.png", "report.html", "fit.json", "prediction.json", "ledger.jsonl"):
        assert (out / name).is_file(), name
    assert "Image-text loss forecast" in (out / "report.html").read_text()

    # registered, as an image-text loss, before the target wrote anything
    entry = json.loads((out / "ledger.jsonl").read_text().splitlines()[-1])
    assert entry["kind"] == "loss" and entry["predictions"][0]["name"] == "held-out image-text loss"
    assert entry["predictions"][0]["y"] == result["predicted_loss"]
    target_start = min(p.stat().st_mtime for p in (out / "target").rglob("*") if p.is_file())
    assert (out / "prediction.json").stat().st_mtime <= target_start

    # a re-run skips every finished stage (and each finished ladder run)
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("(done, skipped)") == 5 and "ladder:" not in again.stdout
    assert json.loads((out / "forecast.json").read_text())["predicted_loss"] == result["predicted_loss"]
