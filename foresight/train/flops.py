"""Training FLOPs and model-FLOPs utilization.

FLOPs per trained token (forward + backward = 3 x forward, a multiply-add counted as 2 FLOPs):

    6 * (non_embedding_params + vocab_size * d_model)  +  12 * n_layers * d_model * seq_len

The first term is every weight matmul, including the output projection (vocab x d_model), which is a real matmul
whether or not it is tied to the input embedding; the input embedding is a lookup and costs nothing. The second term
is attention's score and value products: per layer and token, QK^T and AV each take 2 * seq_len * d_model FLOPs
forward; counted over the full (non-causal) square, as PaLM's MFU convention and nanoGPT do. A run's `flops` is this
times its trained tokens. Norms, activations and softmax are left out (well under 1% at these shapes).

An image-text run (`foresight vlm train`, a ViT encoder trained with the language model) is counted the same way,
per training conversation, in `image_text_flops`: every trained weight does 6 FLOPs per token it sees (forward and
backward), so the encoder's weights count once per image patch, the projector's once per image token, the language
model's once per input position (the image tokens included: they are positions like any other), and its output
head once per *trained* position only (the loss reads the assistant's tokens, and the head runs on those alone);
attention adds 12 * layers * width * context per position, over the full square as above (the ViT's context is its
patches, the language model's the conversation). Conversations vary in length, so a run's compute uses the mean
length of its training conversations (`vlm.train.ConversationStats`), measured the same way when a ladder is
planned and when the run writes its summary. Padding to the longest row of a micro-batch is not counted: like the
text runs' count, this is the work the model needs, not what a particular batching spends.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from pathlib import Path

import torch

from foresight.model.config import ModelConfig


def non_embedding_params(cfg: ModelConfig) -> int:
    """Parameters outside the token embedding and output projection, from the shape alone."""
    d, hd = cfg.d_model, cfg.head_dim
    attn = d * (cfg.n_heads + 2 * cfg.n_kv_heads) * hd + cfg.n_heads * hd * d
    mlp = 3 * d * cfg.d_ff
    norms = 2 * d
    return cfg.n_layers * (attn + mlp + norms) + d


def total_params(cfg: ModelConfig) -> int:
    embeddings = cfg.vocab_size * cfg.d_model * (1 if cfg.tie_embeddings else 2)
    return non_embedding_params(cfg) + embeddings


def flops_per_token(cfg: ModelConfig, seq_len: int) -> float:
    matmul_params = non_embedding_params(cfg) + cfg.vocab_size * cfg.d_model
    return 6.0 * matmul_params + 12.0 * cfg.n_layers * cfg.d_model * seq_len


def training_flops(cfg: ModelConfig, seq_len: int, tokens: int) -> float:
    return flops_per_token(cfg, seq_len) * tokens


# ----- image-text runs -------------------------------------------------------------------------------------------

IMAGE_TEXT_FLOPS_FORMULA = (
    "conversations * (6*n*(3*p^2*d_vit + N_vit) + 12*L_vit*d_vit*n^2 + 6*n*(d_vit*d_model + d_model^2) "
    "+ 6*P*N_lm + 12*L_lm*d_model*P^2 + 6*A*vocab_size*d_model); n image tokens of p x p pixels, P mean input "
    "positions and A mean trained positions per conversation")


def _check_vit(vision) -> None:
    if vision.encoder != "vit" or vision.frozen:
        raise ValueError("image-text compute is defined for a ViT encoder trained with the language model (a frozen "
                         "pretrained encoder does no backward pass and has no width here to count)")


def image_text_params(model: ModelConfig, vision) -> tuple[int, int]:
    """(all parameters, non-embedding parameters) of a vision-language model with a ViT encoder (`vision`, a
    model.vision.VisionConfig), from the shapes. The language model's token embedding and output head are the only
    embedding parameters; the projector and the encoder (its patch embedding is a matmul) count as non-embedding."""
    _check_vit(vision)
    d, dv, n, f = model.d_model, vision.d_model, vision.tokens_per_image, vision.feature_dim
    encoder = (3 * vision.patch_size ** 2 + 1) * dv + n * dv + non_embedding_params(vision.vit_blocks())
    projector = 2 * f + (f + 1) * d + (d + 1) * d  # LayerNorm, fc1, fc2 (with biases)
    return total_params(model) + projector + encoder, non_embedding_params(model) + projector + encoder


def image_text_flops(model: ModelConfig, vision, positions: float, trained: float, conversations: int) -> float:
    """Training FLOPs of `conversations` image-text conversations (one image each) of `positions` input positions
    on average, `trained` of them trained (the module docstring explains the count; IMAGE_TEXT_FLOPS_FORMULA
    writes it out). `model.vocab_size` must be the language model's real one (the tokenizer's and the image
    placeholder)."""
    _check_vit(vision)
    n, dv, d = vision.tokens_per_image, vision.d_model, model.d_model
    encoder = 6 * n * (3 * vision.patch_size ** 2 * dv + non_embedding_params(vision.vit_blocks())) \
        + 12 * vision.n_layers * dv * n * n
    projector = 6 * n * (vision.feature_dim * d + d * d)
    language = 6 * positions * non_embedding_params(model) + 12 * model.n_layers * d * positions * positions \
        + 6 * trained * model.vocab_size * d
    return float(conversations * (encoder + projector + language))


# Dense (no sparsity) peak throughput in FLOP/s, by substring of torch.cuda.get_device_name(), for bf16.
GPU_PEAK_BF16 = {
    "H200": 989e12,
    "H100": 989e12,  # SXM; the PCIe card is lower (756e12), matched first below
    "A100": 312e12,
    "L4": 121e12,
    "A10": 125e12,
    "4090": 165e12,
}


def gpu_peak_flops(device_name: str) -> float | None:
    if "H100" in device_name and "PCIe" in device_name:
        return 756e12
    for key, peak in GPU_PEAK_BF16.items():
        if key in device_name:
            return peak
    return None


def _cache_dir() -> Path:
    return Path(os.environ.get("FORESIGHT_CACHE", Path.home() / ".cache" / "foresight"))


def cpu_peak_flops(threads: int | None = None, refresh: bool = False) -> float:
    """The CPU's fp32 matmul throughput, measured once (a 1024^3 matmul, best of several) and cached per machine,
    thread count and torch version. CPUs publish no dense peak we can look up, so MFU on CPU is relative to what
    this machine's BLAS actually reaches on a large square matmul."""
    threads = threads or torch.get_num_threads()
    key = f"{platform.processor() or platform.machine()}|{os.cpu_count()}|{threads}|{torch.__version__}"
    path = _cache_dir() / "cpu_peak.json"
    cache = {}
    if path.is_file():
        try:
            cache = json.loads(path.read_text())
        except (json.JSONDecodeError, OSError):
            cache = {}
    if key in cache and not refresh:
        return float(cache[key])
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        n = 1024
        local = torch.Generator().manual_seed(0)  # not the global RNG, which a run's checkpoints save
        a, b = torch.randn(n, n, generator=local), torch.randn(n, n, generator=local)
        for _ in range(3):
            a @ b
        best = float("inf")
        for _ in range(8):
            t0 = time.perf_counter()
            a @ b
            best = min(best, time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    peak = 2 * n**3 / best
    cache[key] = peak
    try:
        from foresight.files import atomic_write_text

        atomic_write_text(path, json.dumps(cache, indent=1))
    except OSError:
        pass  # a read-only home only costs a re-measurement next time
    return peak


def device_peak_flops(device: torch.device) -> tuple[float | None, str]:
    """(peak FLOP/s, a note saying what the peak is)."""
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        peak = gpu_peak_flops(name)
        return peak, f"{name} dense bf16 peak" if peak else f"unknown peak for {name}"
    peak = cpu_peak_flops()
    return peak, f"CPU fp32 matmul peak measured on this machine ({torch.get_num_threads()} threads), cached"


def plan_length(cfg) -> tuple[int, int]:
    """(optimizer steps, tokens) of a run (a config.RunConfig) from whichever of train.tokens / flops /
    tokens_per_param is set; the tokens are rounded up to whole optimizer steps."""
    t = cfg.train
    if t.tokens:
        target = t.tokens
    elif t.flops:
        target = t.flops / flops_per_token(cfg.model, t.seq_len)
    else:
        target = t.tokens_per_param * total_params(cfg.model)
    tokens_per_step = t.batch_size * t.seq_len
    steps = max(1, math.ceil(target / tokens_per_step))
    return steps, steps * tokens_per_step
