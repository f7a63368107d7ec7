"""Export any MODEL as a Hugging Face folder that `transformers` loads as a plain LlamaForCausalLM.

The folder holds config.json, generation_config.json, model.safetensors and the tokenizer (tokenizer.json,
tokenizer_config.json, chat_template.jinja when the model has one). Our muP scalars (attention scale, logit and
embedding multipliers) are folded into the weights by `hf.state_dict_to_hf`, so the exported model computes the same
logits with stock Llama code. The folder is written next to DIR under a temporary name and renamed into place, so an
interrupted export leaves no half-written DIR.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch

from foresight.errors import ForesightError
from foresight.weights import hf as hf_format
from foresight.model.chat_template import TEMPLATE_FILE
from foresight.weights.load import HFTokenizer, LoadedModel, RunTokenizer, load_model
from foresight.model.transformer import Transformer

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


FORMATS = ("hf",)  # the only output format so far; GGUF export would be the next one


def export_model(spec: str, out: Path, fmt: str = "hf", dtype: torch.dtype | str = torch.float32) -> Path:
    """Load MODEL `spec` (anything load_model accepts) and write it to `out` in format `fmt` (a Hugging Face
    folder). `dtype` is a torch dtype or one of DTYPES' names."""
    out = Path(out)
    if fmt not in FORMATS:
        raise ForesightError(f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if isinstance(dtype, str):
        if dtype not in DTYPES:
            raise ForesightError(f"unknown dtype {dtype!r}; choose one of {', '.join(DTYPES)}")
        dtype = DTYPES[dtype]
    _check_out(out)  # before the (possibly slow) load
    loaded = load_model(spec)
    # Check the tokenizer can be exported before spending time on the weights.
    if isinstance(loaded.tokenizer, RunTokenizer):
        _check_run_tokenizer(loaded.tokenizer)
    return write_hf_folder(loaded, out, dtype)


def _check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ForesightError(f"{out} already exists and is not empty; choose another --out or remove it first")


def write_hf_folder(loaded: LoadedModel, out: Path, dtype: torch.dtype = torch.float32) -> Path:
    from safetensors.torch import save_file

    out = Path(out)
    _check_out(out)
    model, tokenizer = loaded.model, loaded.tokenizer
    cfg = model.cfg
    tie = hf_format.export_ties(cfg, model.logit_scale)
    bos_id = _bos_id(tokenizer)
    eos_ids = list(tokenizer.eos_ids)
    eos = eos_ids[0] if len(eos_ids) == 1 else (eos_ids or None)

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".tmp-{out.name}-", dir=out.parent))
    try:
        hf_state = hf_format.state_dict_to_hf(_float32_state(model), cfg, logit_scale=model.logit_scale)
        save_file({k: v.to(dtype) for k, v in hf_state.items()}, str(tmp / "model.safetensors"),
                  metadata={"format": "pt"})
        config = hf_format.config_to_hf(cfg, bos_id=bos_id, eos_id=eos, tie=tie, dtype=dtype)
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        generation = {"bos_token_id": bos_id, "eos_token_id": eos}
        (tmp / "generation_config.json").write_text(
            json.dumps({k: v for k, v in generation.items() if v is not None}, indent=2))
        export_tokenizer(tokenizer, tmp, model_max_length=cfg.max_seq_len)
        if out.exists():
            out.rmdir()  # empty (checked above)
        os.rename(tmp, out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def _float32_state(model: Transformer) -> dict[str, torch.Tensor]:
    """Fold the muP scalars in float32 even for a bf16 model, then cast once when saving."""
    return {k: v.detach().to("cpu", torch.float32) for k, v in model.state_dict().items()}


def _bos_id(tokenizer) -> int | None:
    if tokenizer.bos_ids:
        return tokenizer.bos_ids[0]
    if isinstance(tokenizer, HFTokenizer) and "bos_token" in tokenizer.special_tokens:
        return tokenizer.backend.token_to_id(tokenizer.special_tokens["bos_token"])
    return None


# ----- tokenizers ----------------------------------------------------------------------------------------------------


def _check_run_tokenizer(tokenizer: RunTokenizer) -> None:
    if tokenizer.tokenizer.kind != "bpe":
        raise ForesightError(
            f"cannot export the {tokenizer.tokenizer.spec} tokenizer: tiktoken encodings are not supported by "
            "export (they have no Hugging Face tokenizer.json form here). Export a run trained with a bpe:N tokenizer, or load the weights yourself "
            "and pair them with a tiktoken encoding")


def export_tokenizer(tokenizer, out: Path, model_max_length: int | None = None) -> None:
    """Write `tokenizer` in the files AutoTokenizer.from_pretrained(out) reads."""
    out = Path(out)
    if isinstance(tokenizer, HFTokenizer):
        tokenizer.save_pretrained(out)
        return
    if not isinstance(tokenizer, RunTokenizer):
        raise TypeError(f"cannot export a {type(tokenizer).__name__}")
    _check_run_tokenizer(tokenizer)
    from foresight.data.tokenizer import EOS

    # Our BPE is a Hugging Face `tokenizers` model already: its own save writes the tokenizer.json we need.
    with tempfile.TemporaryDirectory() as scratch:
        tokenizer.tokenizer.save(Path(scratch))
        shutil.copyfile(Path(scratch) / "tokenizer.json", out / "tokenizer.json")
    config = {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "eos_token": EOS,
        "clean_up_tokenization_spaces": False,
        "add_bos_token": False,
        "add_eos_token": False,
    }
    if model_max_length:
        config["model_max_length"] = model_max_length
    (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2))
    if tokenizer.chat_template:
        (out / TEMPLATE_FILE).write_text(tokenizer.chat_template)
