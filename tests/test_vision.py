"""Images: the EfficientNet-Lite0 port against its reference, the synthetic scenes' answers against their pixels,
and the vision-language model's wiring (images placed at their placeholders, prompts, generation)."""

import numpy as np
import pytest
import torch

from foresight.data import scenes
from foresight.errors import ForesightError
from foresight.model import ModelConfig, Transformer
from foresight.model.generate import Generation
from foresight.model.vision import VisionConfig
from foresight.model.vlm import (IMAGE_MARKER, ImagePromptTokenizer, VisionLanguageModel, encode_with_images,
                                 flatten_content)
from foresight.data.images import image_tensor


def test_efficientnet_lite0_features_equal_the_reference_implementation():
    from efficientnet_lite_pytorch import EfficientNet

    from foresight.model.vision import lite0_weights_file, pretrained_lite0

    reference = EfficientNet.from_pretrained("efficientnet-lite0", weights_path=str(lite0_weights_file())).eval()
    ours = pretrained_lite0().eval()
    images = image_tensor([scenes.scene("train", i, 224).image for i in range(2)])
    with torch.no_grad():
        expected = reference.extract_features((images * 255 - 127) / 128)  # its documented input scaling
        got = ours(images)
    assert got.shape == (2, 49, 1280)
    torch.testing.assert_close(got, expected.flatten(2).transpose(1, 2), atol=1e-5, rtol=1e-5)
    # And it tells the ImageNet classes apart as the reference does: same top class on both images.
    with torch.no_grad():
        logits = reference(images * 255 / 128 - 127 / 128)
    assert logits.argmax(-1).tolist() == reference._fc(got.mean(1)).argmax(-1).tolist()


def _foreground(image, background_distance: int = 60) -> np.ndarray:
    pixels = np.asarray(image, dtype=np.int32)
    return np.abs(pixels - pixels[0, 0]).sum(-1) > background_distance


def test_single_scenes_show_the_colour_and_quadrant_their_answers_name():
    for index in range(0, 40, 5):
        s = scenes.scene("heldout", index, 64, ("single",))
        answers = {kind: answer for kind, _, answer in s.questions}
        ys, xs = np.nonzero(_foreground(s.image))
        where = ("top" if ys.mean() < 32 else "bottom") + " " + ("left" if xs.mean() < 32 else "right")
        assert where == answers["position"]
        mean = np.asarray(s.image, dtype=np.float64)[ys, xs].mean(0)
        nearest = min(scenes.COLOURS, key=lambda c: np.abs(np.array(scenes.COLOURS[c]) - mean).sum())
        assert nearest == answers["colour"]


def test_count_scenes_hold_as_many_separate_shapes_as_their_answer():
    from scipy import ndimage

    for index in range(12):
        s = scenes.scene("train", index, 96, ("count",))
        _, n = ndimage.label(_foreground(s.image))
        assert str(n) == s.questions[0][2]


def test_scenes_are_fixed_by_split_and_index_and_their_questions_do_not_depend_on_size():
    a, b = scenes.scene("train", 7, 48), scenes.scene("train", 7, 48)
    assert np.array_equal(np.asarray(a.image), np.asarray(b.image))
    assert scenes.scene("train", 7, 224).questions == a.questions
    assert [scenes.scene("heldout", i, 16).caption for i in range(20)] != \
        [scenes.scene("train", i, 16).caption for i in range(20)]
    with pytest.raises(ValueError, match="unknown scene kind 'shapes'"):
        scenes.scene("train", 0, 32, ("shapes",))


@pytest.fixture(scope="module")
def tiny_vlm(tiny):
    _, tokenizer = tiny
    cfg = ModelConfig(vocab_size=tokenizer.vocab_size + 1, d_model=64, n_layers=2, n_heads=4, max_seq_len=160,
                      parametrization="sp", init_std=0.3)
    torch.manual_seed(0)
    vlm = VisionLanguageModel(Transformer(cfg), VisionConfig(image_size=16, patch_size=8, d_model=32),
                              image_token_id=tokenizer.vocab_size).eval()
    return vlm, ImagePromptTokenizer(tokenizer, tokenizer.vocab_size, vlm.tokens_per_image)


def test_the_output_follows_each_rows_own_image_and_nothing_else(tiny_vlm):
    vlm, tokenizer = tiny_vlm
    ids = tokenizer.encode(f"{IMAGE_MARKER}\nThe capital")
    assert ids.count(vlm.image_token_id) == vlm.tokens_per_image == 4
    tokens = torch.tensor([ids, ids])
    images = image_tensor([scenes.scene("train", i, 16).image for i in (0, 1)])
    changed = images.clone()
    changed[1] = image_tensor([scenes.scene("train", 2, 16).image])[0]
    with torch.no_grad():
        before, after = vlm(tokens, images), vlm(tokens, changed)
        text_only = vlm(tokens[:, len(ids) - 2:])  # the text after the image, no placeholder: no image needed
    assert torch.equal(before[0], after[0])  # row 0's image did not change: nor did its output
    assert not torch.allclose(before[1, -1], after[1, -1])  # row 1's did
    assert not torch.allclose(before[0, -1], before[1, -1])  # two images, two outputs
    assert text_only.shape == (2, 2, vlm.cfg.vocab_size)
    with pytest.raises(ForesightError, match="8 image placeholder tokens; 4 are needed for 1 image"):
        vlm(tokens, images[:1])
    with pytest.raises(ValueError, match=r"images must be \[n, 3, 16, 16\]"):
        vlm(tokens, torch.zeros(2, 3, 32, 32))


def test_generation_with_an_image_matches_the_full_forward_and_never_samples_the_placeholder(tiny_vlm):
    vlm, tokenizer = tiny_vlm
    prompts = [tokenizer.encode(f"{IMAGE_MARKER}\nA quick"), tokenizer.encode(f"{IMAGE_MARKER}\nThe lazy dog")]
    images = image_tensor([scenes.scene("heldout", i, 16).image for i in (0, 1)])
    run = Generation(vlm, prompts, max_new_tokens=5, images=images)
    for _ in run:
        pass
    for row, prompt in enumerate(prompts):
        seq = list(prompt)
        for token in run.tokens[row]:
            with torch.no_grad():
                logits = vlm(torch.tensor([seq]), images[row:row + 1])[0, -1]
            logits[vlm.image_token_id] = float("-inf")
            assert token == int(logits.argmax())
            seq.append(token)


def test_image_parts_become_markers_and_markers_become_placeholders(tiny):
    _, tokenizer = tiny
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "\nWhat is it?"}]}]
    assert flatten_content(messages) == [{"role": "user", "content": f"{IMAGE_MARKER}\nWhat is it?"}]
    with pytest.raises(ForesightError, match=r"messages\[0\].content\[1\]: a part must have type"):
        flatten_content([{"role": "user", "content": [{"type": "image"}, {"type": "audio"}]}])
    ids, n = encode_with_images(tokenizer, f"A {IMAGE_MARKER} B {IMAGE_MARKER}", 999, 3)
    assert n == 2 and ids.count(999) == 6
    assert ids[:len(tokenizer.encode("A "))] == tokenizer.encode("A ")


def test_vlm_config_names_the_bad_key():
    from foresight.config import config_from_dict
    from foresight.vlm.config import VLMConfig

    with pytest.raises(ForesightError, match=r"vision.image_size \(30\) must be a positive multiple of"):
        config_from_dict(VLMConfig, {"vision": {"image_size": 30, "patch_size": 4}})
    with pytest.raises(ForesightError, match="kinds: 'circles'; choose from single"):
        config_from_dict(VLMConfig, {"data": {"kinds": ["circles"]}})
    with pytest.raises(ForesightError, match="vlm.stage = 'instruct' starts from a caption run"):
        config_from_dict(VLMConfig, {"vlm": {"stage": "instruct"}})
    with pytest.raises(ForesightError, match="vision.image_size must be 224 for efficientnet-lite0"):
        config_from_dict(VLMConfig, {"vision": {"encoder": "efficientnet-lite0", "image_size": 32}})


def test_bad_images_are_refused_by_name(tmp_path):
    from PIL import Image

    from foresight.data.images import read_image

    good = tmp_path / "scene.png"
    scenes.scene("train", 0, 64).image.save(good)
    assert read_image(good).size == (64, 64)
    truncated = tmp_path / "cut.png"
    truncated.write_bytes(good.read_bytes()[:200])
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    tiff = tmp_path / "scan.tiff"
    Image.new("RGB", (8, 8)).save(tiff)
    bomb = tmp_path / "bomb.png"
    Image.new("1", (20_000, 20_000)).save(bomb)  # 400 million pixels in a ~50 kB file
    cases = {truncated: "the image cannot be decoded .*truncated", text: "not an image this reader accepts",
             tiff: "not an image this reader accepts", bomb: "too many pixels to decode safely",
             tmp_path / "missing.png": "image file not found", tmp_path: "is a directory"}
    for path, message in cases.items():
        with pytest.raises(ForesightError, match=f"^{path}: {message}"):
            read_image(path)
    with pytest.raises(ForesightError, match="^upload: empty"):
        read_image(b"", where="upload")
    rgba = tmp_path / "clear.png"
    Image.new("RGBA", (4, 4), (255, 0, 0, 0)).save(rgba)
    assert read_image(rgba).getpixel((0, 0)) == (255, 255, 255)  # transparent -> the white it is shown on
