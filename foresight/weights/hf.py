"""Adapters between our Transformer and Hugging Face's LlamaForCausalLM (and llama.cpp's GGUF files).

Three things differ between the two layouts, and this module owns all three:

1. names:   model.layers.3.self_attn.o_proj.weight  <->  blocks.3.attn.out.weight, and so on (see `_LAYER_KEYS`);
2. fusion:  HF keeps q/k/v and gate/up as separate matrices; we stack them into one `attn.qkv` and one `mlp.gate_up`
            (fewer, larger matmuls), concatenated along the output dimension in that order;
3. scalars: our muP models scale attention logits by `cfg.attn_scale` (not 1/sqrt(head_dim)), multiply the logits
            by `model.logit_scale` and may multiply the token embeddings by `cfg.embed_mult`. Llama has none of these,
            so on export all are folded into weights: the query rows, the output projection and the embedding are
            multiplied by the factor that makes HF's arithmetic equal ours. Rotary embeddings are a rotation, linear
            in q, so scaling q's projection scales q·k exactly.

GGUF (llama.cpp) files are read with the `gguf` package and turned into the Hugging Face layout first; llama.cpp
stores q and k with each head's rotary halves interleaved, which `unpermute_rotary` undoes.
"""

from __future__ import annotations

import math
from pathlib import Path

import torch

from foresight.errors import ForesightError
from foresight.model.config import ModelConfig

# ----- names ---------------------------------------------------------------------------------------------------------

# Per-layer tensors that map one-to-one: our name -> HF name (both after the layer prefix).
_LAYER_KEYS = {
    "attn_norm.weight": "input_layernorm.weight",
    "attn.out.weight": "self_attn.o_proj.weight",
    "mlp_norm.weight": "post_attention_layernorm.weight",
    "mlp.down.weight": "mlp.down_proj.weight",
}
# Per-layer tensors we fuse: our name -> the HF names stacked (in this order) along the output dimension.
_FUSED_KEYS = {
    "attn.qkv.weight": ("self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight"),
    "mlp.gate_up.weight": ("mlp.gate_proj.weight", "mlp.up_proj.weight"),
}
_GLOBAL_KEYS = {"embed.weight": "model.embed_tokens.weight", "norm.weight": "model.norm.weight",
                "lm_head.weight": "lm_head.weight"}


def _fused_sizes(cfg: ModelConfig, key: str) -> list[int]:
    if key == "attn.qkv.weight":
        return [cfg.n_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim, cfg.n_kv_heads * cfg.head_dim]
    return [cfg.d_ff, cfg.d_ff]


# ----- configs -------------------------------------------------------------------------------------------------------


def config_from_hf(hf: dict, where: str = "config.json") -> ModelConfig:
    """Our ModelConfig (standard parametrization) for a Hugging Face Llama config dict. Anything this model cannot
    represent exactly (biases, rope scaling, a head_dim other than hidden_size / heads, ...) is refused by name."""
    model_type = hf.get("model_type", "llama")
    if model_type not in ("llama", "mistral"):
        raise ForesightError(f"{where}: model_type {model_type!r} is not supported (only Llama-architecture models)")
    required = ["vocab_size", "hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size"]
    if missing := [k for k in required if k not in hf]:
        raise ForesightError(f"{where}: missing {', '.join(missing)}")
    problems = []
    if hf.get("attention_bias") or hf.get("mlp_bias"):
        problems.append("attention_bias/mlp_bias (this model has no biases)")
    if hf.get("hidden_act", "silu") != "silu":
        problems.append(f"hidden_act = {hf['hidden_act']!r} (only silu)")
    if hf.get("sliding_window"):
        problems.append(f"sliding_window = {hf['sliding_window']} (full attention only)")
    # transformers 5 keeps rope settings in rope_parameters; older configs use rope_theta + rope_scaling.
    rope = dict(hf.get("rope_parameters") or {})
    scaling = hf.get("rope_scaling") or {}
    rope_types = {d.get(k) for d in (rope, scaling) for k in ("rope_type", "type")} - {None, "default"}
    if rope_types:
        problems.append(f"rope type {', '.join(map(repr, sorted(rope_types)))} (only plain rotary embeddings)")
    head_dim = hf.get("head_dim") or hf["hidden_size"] // hf["num_attention_heads"]
    if head_dim * hf["num_attention_heads"] != hf["hidden_size"]:
        problems.append(f"head_dim = {head_dim} (must be hidden_size / num_attention_heads)")
    if problems:
        raise ForesightError(f"{where}: unsupported " + "; ".join(problems))
    try:
        return ModelConfig(
            vocab_size=hf["vocab_size"],
            d_model=hf["hidden_size"],
            n_layers=hf["num_hidden_layers"],
            n_heads=hf["num_attention_heads"],
            n_kv_heads=hf.get("num_key_value_heads") or hf["num_attention_heads"],
            d_ff=hf["intermediate_size"],
            max_seq_len=hf.get("max_position_embeddings", 2048),
            rope_theta=float(rope.get("rope_theta", hf.get("rope_theta", 10000.0))),
            norm_eps=float(hf.get("rms_norm_eps", 1e-6)),
            tie_embeddings=bool(hf.get("tie_word_embeddings", False)),
            parametrization="sp",
        )
    except ValueError as e:
        raise ForesightError(f"{where}: {e}") from None


def export_ties(cfg: ModelConfig, logit_scale: float) -> bool:
    """Whether an export keeps input and output embeddings tied: a logit or embedding multiplier other than 1 cannot
    be folded into a matrix the other side shares, so such a model is exported untied."""
    return cfg.tie_embeddings and logit_scale == 1.0 and cfg.embed_mult == 1.0


def config_to_hf(cfg: ModelConfig, bos_id: int | None = None, eos_id: int | list[int] | None = None, *,
                 tie: bool | None = None, dtype: torch.dtype = torch.float32) -> dict:
    """A LlamaForCausalLM config.json dict for this shape (tie defaults to cfg.tie_embeddings). The muP scalars are
    not represented: `state_dict_to_hf` folds them into the weights. rope_theta is written in both the old and the
    transformers-5 form so that either version reads the same value."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": cfg.vocab_size,
        "hidden_size": cfg.d_model,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": cfg.n_heads,
        "num_key_value_heads": cfg.n_kv_heads,
        "head_dim": cfg.head_dim,
        "max_position_embeddings": cfg.max_seq_len,
        "rms_norm_eps": cfg.norm_eps,
        "rope_theta": cfg.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": cfg.rope_theta},
        "hidden_act": "silu",
        "attention_bias": False,
        "mlp_bias": False,
        "attention_dropout": 0.0,
        "initializer_range": cfg.init_std,
        "tie_word_embeddings": cfg.tie_embeddings if tie is None else tie,
        "bos_token_id": bos_id,
        "eos_token_id": eos_id,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "use_cache": True,
    }


# ----- state dicts ---------------------------------------------------------------------------------------------------


def state_dict_from_hf(hf_state: dict[str, torch.Tensor], cfg: ModelConfig) -> dict[str, torch.Tensor]:
    """HF LlamaForCausalLM tensors -> our Transformer's state dict (q/k/v and gate/up fused). Every HF tensor must be
    used (rotary inv_freq buffers aside): an unknown key means an architecture we would silently get wrong."""
    remaining = {k: v for k, v in hf_state.items() if not k.endswith("rotary_emb.inv_freq")}

    def take(name: str) -> torch.Tensor:
        if name not in remaining:
            raise ForesightError(f"weights: missing tensor {name}")
        return remaining.pop(name)

    ours = {}
    for our_key, hf_key in _GLOBAL_KEYS.items():
        if our_key == "lm_head.weight" and cfg.tie_embeddings:
            remaining.pop(hf_key, None)  # some tied checkpoints store the shared matrix twice
            continue
        ours[our_key] = take(hf_key)
    for i in range(cfg.n_layers):
        for our_key, hf_key in _LAYER_KEYS.items():
            ours[f"blocks.{i}.{our_key}"] = take(f"model.layers.{i}.{hf_key}")
        for our_key, hf_keys in _FUSED_KEYS.items():
            ours[f"blocks.{i}.{our_key}"] = torch.cat([take(f"model.layers.{i}.{k}") for k in hf_keys], dim=0)
    if remaining:
        raise ForesightError(f"weights: unexpected tensors {sorted(remaining)[:5]} (not a plain Llama model?)")
    return ours


def state_dict_to_hf(state: dict[str, torch.Tensor], cfg: ModelConfig,
                     logit_scale: float = 1.0) -> dict[str, torch.Tensor]:
    """Our state dict -> HF LlamaForCausalLM tensors, with our two extra scalars folded into the weights:

    - attention: HF computes softmax(q·k / sqrt(head_dim)), we compute softmax(q·k * cfg.attn_scale), so the query
      projection is multiplied by attn_scale * sqrt(head_dim) (1 under standard parametrization: left untouched);
    - logits: ours are lm_head(x) * logit_scale, so lm_head is multiplied by logit_scale;
    - inputs: ours are embed(tokens) * cfg.embed_mult, so the embedding is multiplied by embed_mult.

    lm_head.weight is left out when the export stays tied (`export_ties`)."""
    q_factor = cfg.attn_scale * math.sqrt(cfg.head_dim)
    embed = state["embed.weight"] * cfg.embed_mult if cfg.embed_mult != 1.0 else state["embed.weight"]
    hf = {"model.embed_tokens.weight": embed, "model.norm.weight": state["norm.weight"]}
    if not export_ties(cfg, logit_scale):
        head = state.get("lm_head.weight", state["embed.weight"])  # a tied model's state may hold it only once
        hf["lm_head.weight"] = head * logit_scale  # a new tensor, never sharing memory with the embedding
    for i in range(cfg.n_layers):
        for our_key, hf_key in _LAYER_KEYS.items():
            hf[f"model.layers.{i}.{hf_key}"] = state[f"blocks.{i}.{our_key}"]
        for our_key, hf_keys in _FUSED_KEYS.items():
            parts = state[f"blocks.{i}.{our_key}"].split(_fused_sizes(cfg, our_key), dim=0)
            for hf_key, part in zip(hf_keys, parts):
                # clone: split views share the fused tensor's memory, which safetensors refuses to save
                hf[f"model.layers.{i}.{hf_key}"] = part.clone()
        if abs(q_factor - 1.0) > 1e-12:
            q_key = f"model.layers.{i}.self_attn.q_proj.weight"
            hf[q_key] = hf[q_key] * q_factor
    return {k: v.detach().contiguous() for k, v in hf.items()}


# ----- GGUF (llama.cpp) ----------------------------------------------------------------------------------------------

# GGUF tensor names (per layer, after "blk.N.") -> HF names (after "model.layers.N.").
_GGUF_LAYER_KEYS = {
    "attn_norm": "input_layernorm", "attn_q": "self_attn.q_proj", "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj", "attn_output": "self_attn.o_proj", "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj", "ffn_up": "mlp.up_proj", "ffn_down": "mlp.down_proj",
}
_GGUF_GLOBAL_KEYS = {"token_embd": "model.embed_tokens", "output_norm": "model.norm", "output": "lm_head"}


def unpermute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """Undo llama.cpp's q/k row order. Its converter reorders each head's rows from HF's "rotate half" layout
    (first half, then second half) to interleaved pairs (x0, x_half, x1, x_half+1, ...); this puts them back."""
    rows = w.shape[0]
    return w.reshape(n_heads, rows // n_heads // 2, 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def permute_rotary(w: torch.Tensor, n_heads: int) -> torch.Tensor:
    """llama.cpp's q/k row order: the inverse of `unpermute_rotary` (tests use it to write GGUF files)."""
    rows = w.shape[0]
    return w.reshape(n_heads, 2, rows // n_heads // 2, *w.shape[1:]).transpose(1, 2).reshape(w.shape)


def _gguf_value(reader, key: str, default=None):
    field = reader.fields.get(key)
    return default if field is None else field.contents()


def _float32_decimal(value) -> float:
    import numpy as np

    return float(repr(np.float32(value)).removeprefix("np.float32(").removesuffix(")"))


def read_gguf(path: Path) -> tuple[dict, dict[str, torch.Tensor]]:
    """(HF config dict, HF-named float32 tensors) from a Llama-architecture GGUF file. Quantized tensors are
    dequantized exactly (each stored value is a block scale times a small integer plus a block minimum)."""
    from gguf import GGUFReader, dequantize

    try:
        reader = GGUFReader(str(path))
    except Exception as e:  # not a GGUF file, or a truncated one
        raise ForesightError(f"cannot read GGUF file {path}: {e}") from None
    arch = _gguf_value(reader, "general.architecture")
    if arch != "llama":
        raise ForesightError(f"{path}: GGUF architecture {arch!r} is not supported (only 'llama')")

    def meta(name: str, default=None):
        value = _gguf_value(reader, f"llama.{name}", default)
        if value is None:
            raise ForesightError(f"{path}: GGUF metadata llama.{name} is missing")
        return value

    if _gguf_value(reader, "llama.rope.scaling.type", "none") != "none":
        raise ForesightError(f"{path}: rope scaling is not supported")
    names = {t.name for t in reader.tensors}
    n_heads = int(meta("attention.head_count"))
    n_kv_heads = int(meta("attention.head_count_kv", n_heads))
    n_vocab = _gguf_value(reader, "llama.vocab_size")
    if n_vocab is None:
        n_vocab = len(reader.fields["tokenizer.ggml.tokens"].data)
    hf_config = {
        "model_type": "llama",
        "vocab_size": int(n_vocab),
        "hidden_size": int(meta("embedding_length")),
        "intermediate_size": int(meta("feed_forward_length")),
        "num_hidden_layers": int(meta("block_count")),
        "num_attention_heads": n_heads,
        "num_key_value_heads": n_kv_heads,
        "max_position_embeddings": int(meta("context_length", 2048)),
        # GGUF stores floats as float32 (1e-5 becomes 9.9999997e-06): keep the shortest decimal that rounds to it.
        "rms_norm_eps": _float32_decimal(meta("attention.layer_norm_rms_epsilon", 1e-5)),
        "rope_theta": _float32_decimal(meta("rope.freq_base", 10000.0)),
        "tie_word_embeddings": "output.weight" not in names,
        "bos_token_id": _gguf_value(reader, "tokenizer.ggml.bos_token_id"),
        "eos_token_id": _gguf_value(reader, "tokenizer.ggml.eos_token_id"),
        "pad_token_id": _gguf_value(reader, "tokenizer.ggml.padding_token_id"),
    }
    head_dim = hf_config["hidden_size"] // n_heads
    if int(_gguf_value(reader, "llama.rope.dimension_count", head_dim)) != head_dim:
        raise ForesightError(f"{path}: partial rotary embeddings (rope.dimension_count != head_dim) are not supported")

    tensors = {}
    for t in reader.tensors:
        prefix, _, rest = t.name.partition(".")
        if prefix == "blk":
            layer, _, rest = rest.partition(".")
            base, _, suffix = rest.partition(".")
            if base not in _GGUF_LAYER_KEYS:
                raise ForesightError(f"{path}: unexpected tensor {t.name} (not a plain Llama model?)")
            hf_name = f"model.layers.{layer}.{_GGUF_LAYER_KEYS[base]}.{suffix}"
        elif prefix in _GGUF_GLOBAL_KEYS:
            hf_name, base = f"{_GGUF_GLOBAL_KEYS[prefix]}.{rest}", prefix
        else:
            raise ForesightError(f"{path}: unexpected tensor {t.name} (not a plain Llama model?)")
        # dequantize gives the logical shape in row-major order ([out, in] for matrices), as PyTorch stores it.
        w = torch.from_numpy(dequantize(t.data, t.tensor_type).astype("float32", copy=True))
        if base == "attn_q":
            w = unpermute_rotary(w, n_heads)
        elif base == "attn_k":
            w = unpermute_rotary(w, n_kv_heads)
        tensors[hf_name] = w.contiguous()
    return hf_config, tensors
