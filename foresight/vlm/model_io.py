"""Building, saving and loading a vision-language model.

A saved model is a folder: the language model as a Hugging Face folder (config.json, model.safetensors, the
tokenizer and chat template; any MODEL argument loads it as a text-only model), plus vision.json (the encoder's
VisionConfig and the image placeholder's id) and vision.safetensors (the encoder's and the projector's weights).
`load_vlm(RUN)` reads RUN/model or the folder itself.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import torch

from foresight.errors import ForesightError
from foresight.files import atomic_write_text
from foresight.model.transformer import Transformer
from foresight.model.vision import VisionConfig
from foresight.model.vlm import ImagePromptTokenizer, VisionLanguageModel
from foresight.weights.load import LoadedModel, RunTokenizer

VISION_CONFIG = "vision.json"
VISION_WEIGHTS = "vision.safetensors"


@dataclass
class BuiltVLM:
    vlm: VisionLanguageModel
    tokenizer: ImagePromptTokenizer  # the language model's tokenizer, expanding image markers
    loaded: LoadedModel  # the language model and its own tokenizer, as the text-only code paths take them


def _image_token_id(tokenizer, name: str, spec: str) -> int:
    if not name:
        raise ForesightError(f"vlm.image_token is empty: name a special token of {spec}'s tokenizer that text "
                             f"never uses (its embedding is replaced by the image's), e.g. <empty_output> for SmolLM2")
    backend = getattr(tokenizer, "backend", None)
    token_id = backend.token_to_id(name) if backend is not None else None
    if token_id is None or len(tokenizer.encode(name)) != 1:
        raise ForesightError(f"vlm.image_token {name!r} is not a single special token of {spec}'s tokenizer")
    return token_id


def scratch_tokenizer(cfg, train_items) -> RunTokenizer:
    """The tokenizer of a from-scratch run (base = "scratch"): `cfg.tokenizer` learned from the texts of its
    training conversations, with the run chat template."""
    from foresight.align.run import RUN_CHAT_TEMPLATE
    from foresight.data.tokenizer import Tokenizer

    texts = [m["content"] if isinstance(m["content"], str) else m["content"][-1]["text"]
             for item in train_items for m in item.messages]
    return RunTokenizer(Tokenizer.from_spec(cfg.tokenizer, texts), chat_template=RUN_CHAT_TEMPLATE)


def _scratch(cfg, train_items, device) -> LoadedModel:
    tokenizer = scratch_tokenizer(cfg, train_items)
    # One id past the tokenizer's vocabulary is the image placeholder: no text can produce it.
    lm_cfg = dataclasses.replace(cfg.model, vocab_size=tokenizer.vocab_size + 1)
    torch.manual_seed(cfg.train.seed)
    lm = Transformer(lm_cfg).to(device)
    return LoadedModel(lm, tokenizer, "scratch", "run", Path("."))


def build_vlm(cfg, train_items, device) -> BuiltVLM:
    """The model a VLMConfig starts from: vlm.init (an earlier vlm run), else the base language model (loaded, or
    built from scratch with a tokenizer learned from the training conversations) with a new projector."""
    from foresight.align.run import load_base, trainable

    if cfg.vlm.init:
        built = load_vlm(cfg.vlm.init, device)
        if dataclasses.asdict(built.vlm.vision) != dataclasses.asdict(cfg.vision):
            raise ForesightError(f"vlm.init {cfg.vlm.init} was trained with vision = {built.vlm.vision}, but this "
                                 f"config sets {cfg.vision}: copy its [vision] table")
        trainable(built.vlm.lm)
        built.vlm.train()  # (a frozen encoder stays in eval mode and untrained)
        return built
    if cfg.base == "scratch":
        loaded = _scratch(cfg, train_items, device)
        image_id = loaded.tokenizer.vocab_size
    else:
        loaded = load_base(cfg.base, device)
        image_id = _image_token_id(loaded.tokenizer, cfg.vlm.image_token, cfg.base)
    torch.manual_seed(cfg.train.seed)
    vlm = VisionLanguageModel(loaded.model, cfg.vision, image_id).to(device)
    vlm.train()
    return BuiltVLM(vlm, ImagePromptTokenizer(loaded.tokenizer, image_id, vlm.tokens_per_image), loaded)


def save_vlm(built: BuiltVLM, run: Path) -> Path:
    """Write RUN/model: the language model (a Hugging Face folder) and the vision files (replacing an earlier
    export of the same run)."""
    from safetensors.torch import save_file

    from foresight.align.run import export_model

    vlm = built.vlm
    built.loaded.model = vlm.lm
    folder = export_model(built.loaded, Path(run))
    state = {f"encoder.{k}": v for k, v in vlm.encoder.state_dict().items()}
    state |= {f"projector.{k}": v for k, v in vlm.projector.state_dict().items()}
    save_file({k: v.detach().to("cpu").contiguous() for k, v in state.items()}, str(folder / VISION_WEIGHTS))
    atomic_write_text(folder / VISION_CONFIG, json.dumps(
        {"vision": dataclasses.asdict(vlm.vision), "image_token_id": vlm.image_token_id}, indent=1) + "\n")
    return folder


def is_vlm(path: str | Path) -> bool:
    path = Path(path)
    return (path / VISION_CONFIG).is_file() or (path / "model" / VISION_CONFIG).is_file()


def load_vlm(path: str | Path, device="cpu") -> BuiltVLM:
    """A saved vision-language model (RUN or RUN/model), in eval mode."""
    from safetensors.torch import load_file

    from foresight.weights.load import load_hf_folder

    path = Path(path)
    folder = path if (path / VISION_CONFIG).is_file() else path / "model"
    if not (folder / VISION_CONFIG).is_file():
        raise ForesightError(f"{path} is not a vision-language model (no {VISION_CONFIG} in it or in its model/)")
    meta = json.loads((folder / VISION_CONFIG).read_text())
    vision = VisionConfig(**meta["vision"])
    loaded = load_hf_folder(folder, device, name=path.resolve().name, kind="tuned")
    vlm = VisionLanguageModel(loaded.model, vision, int(meta["image_token_id"]), pretrained_encoder=False)
    state = load_file(str(folder / VISION_WEIGHTS), device="cpu")
    vlm.encoder.load_state_dict({k[8:]: v for k, v in state.items() if k.startswith("encoder.")})
    vlm.projector.load_state_dict({k[10:]: v for k, v in state.items() if k.startswith("projector.")})
    vlm.to(device).eval()
    return BuiltVLM(vlm, ImagePromptTokenizer(loaded.tokenizer, vlm.image_token_id, vlm.tokens_per_image), loaded)


def load_chat_model(spec: str, device="cpu", dtype: torch.dtype = torch.float32, quantize: str | None = None):
    """Any MODEL argument as a LoadedModel: a vision-language model (its model with `.vision`, and the tokenizer
    that expands image placeholders) or, for anything else, foresight.weights.load.load_model's text model. What
    chat, the server and the evaluation harness load."""
    from foresight.weights.load import LoadedModel, load_model

    if not is_vlm(spec):
        return load_model(spec, device=device, dtype=dtype, quantize=quantize)
    if quantize:
        raise ForesightError("--quantize is not supported for a vision-language model yet")
    built = load_vlm(spec, device)
    built.vlm.to(dtype)
    return LoadedModel(built.vlm, built.tokenizer, built.loaded.name, built.loaded.kind, built.loaded.source)

