"""Lower-precision weights for inference: int8 weight-only linear layers.

Generating one sequence multiplies a single activation row by every weight matrix, so each new token reads all the
weights from memory once; on a CPU that read is most of the step. Storing the matrices as int8 (one byte per weight
instead of four) cuts it 4x. Only the weights are quantized: activations, norms, attention, the KV cache and the
token embedding stay in the model's dtype.

`quantize_int8(model)` swaps every `nn.Linear` for an `Int8Linear`: per output channel (row) r, the weights are
rounded to q[r] = round(w[r] / s[r]) in [-127, 127] with s[r] = max|w[r]| / 127 (float32), and y = (x @ q.T) * s.
The product x @ q.T is PyTorch's `aten._weight_int8pack_mm`, which reads the int8 matrix and never builds a float
one. On our AVX512 CPUs its fast kernel takes bfloat16 activations (with float32 ones the same op runs a scalar loop,
10-50x slower than a float32 matmul), so each layer's input is rounded to bfloat16 on the way in; the kernel
accumulates in float32 and rounds its output to bfloat16, and the float32 scale is applied after, in the model's
dtype. Those two roundings (relative 2^-9) and the int8 weights are the whole quality cost. The model code does not
know: a Linear is a module that maps x to y. A tied output head (lm_head shares the embedding's weight) gets its
own int8 copy; the embedding lookup keeps the float table.

Measured on SmolLM2-135M-Instruct (2-core AMD EPYC, 2026-12-05): single-stream greedy decoding 2.2x faster than
float32 (48.8 vs 22.3 tokens/s, bench/decode.py, 2 threads); validation loss +0.2% (2.3292 vs 2.3245 nats/token,
94.5K tokens: every 13th document of the default corpus's validation split); MMLU 0-shot 26.0% vs 27.0% on 200
questions (two answers changed, both near-ties), 22.7% vs 22.8% on 1,000; 5-shot 24.0% vs 24.0% on 200. The
kernel is compute-bound, not memory-bound, so it speeds up a few rows at a time, not long prompts: scoring
(prefill, evals) runs ~1.3x slower than float32.
"""

from __future__ import annotations

import torch
from torch import nn

from foresight.errors import ForesightError

KERNEL_DTYPE = torch.bfloat16  # the activation dtype the int8 kernel is fed (see the module docstring)


def int8_available(device: torch.device | str = "cpu", dtype: torch.dtype = KERNEL_DTYPE) -> str | None:
    """None if the int8 kernel runs on this device with these activations, else why not (one line)."""
    op = getattr(torch.ops.aten, "_weight_int8pack_mm", None)
    if op is None:
        return f"this PyTorch ({torch.__version__}) has no aten._weight_int8pack_mm kernel"
    try:
        x = torch.zeros(1, 64, device=device, dtype=dtype)
        op(x, torch.zeros(8, 64, device=device, dtype=torch.int8), torch.ones(8, device=device, dtype=dtype))
    except Exception as e:  # noqa: BLE001 -- any failure (no such device, no kernel for it) is the reason
        reason = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        return f"aten._weight_int8pack_mm does not run on {device} with {dtype} activations ({reason})"
    return None


def require_int8(device: torch.device | str = "cpu") -> None:
    """Raise ForesightError, naming the reason, where the int8 kernel does not run on `device`."""
    why_not = int8_available(device)
    if why_not:
        raise ForesightError(f"int8 weights are not available on {device}: {why_not}; use float weights")


def quantize_rows(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(int8 weights [N, K], float32 scales [N]): symmetric, one scale per output row, computed in float32."""
    w = weight.detach().float()
    scales = w.abs().amax(dim=1) / 127
    scales = torch.where(scales > 0, scales, torch.ones_like(scales))  # an all-zero row stays zero
    q = torch.round(w / scales[:, None]).clamp_(-127, 127).to(torch.int8)
    return q.contiguous(), scales


class Int8Linear(nn.Module):
    """y = x @ dequantize(weight).T (+ bias), reading int8 weights: a drop-in for an inference-only nn.Linear."""

    def __init__(self, weight_int8: torch.Tensor, scales: torch.Tensor, bias: torch.Tensor | None = None):
        super().__init__()
        self.out_features, self.in_features = weight_int8.shape
        self.register_buffer("weight_int8", weight_int8)
        self.register_buffer("scales", scales)  # [N], in the model's dtype, applied after the kernel
        self.register_buffer("bias", bias)
        # The kernel's own per-row scales: all ones, so that it never rounds the real scales to bfloat16.
        self.register_buffer("unit_scales", torch.ones(self.out_features, device=weight_int8.device,
                                                       dtype=KERNEL_DTYPE), persistent=False)

    @classmethod
    def from_linear(cls, linear: nn.Linear) -> "Int8Linear":
        dtype = linear.weight.dtype
        q, scales = quantize_rows(linear.weight)
        bias = None if linear.bias is None else linear.bias.detach().clone()
        return cls(q.to(linear.weight.device), scales.to(linear.weight.device, dtype), bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        x2 = x.reshape(-1, self.in_features).to(KERNEL_DTYPE).contiguous()
        y = torch.ops.aten._weight_int8pack_mm(x2, self.weight_int8, self.unit_scales).to(x.dtype) * self.scales
        if self.bias is not None:
            y = y + self.bias
        return y.view(*shape[:-1], self.out_features)

    def dequantized(self) -> torch.Tensor:
        """The float weight matrix this layer computes with (for tests and inspection)."""
        return self.weight_int8.float() * self.scales.float()[:, None]

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, bias={self.bias is not None}, int8"


def quantize_int8(model: nn.Module) -> nn.Module:
    """Replace every nn.Linear in `model` (in place) by an Int8Linear; returns the model. For inference only:
    the int8 weights are buffers, not trainable parameters. Raises ForesightError, naming the reason, where the
    int8 kernel does not run on the model's device."""
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linears:
        return model
    require_int8(linears[0][1].weight.device)
    done: dict[int, Int8Linear] = {}  # by id of the Linear, for a module that appears twice
    for name, linear in linears:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        if id(linear) not in done:
            done[id(linear)] = Int8Linear.from_linear(linear)
        setattr(parent, child, done[id(linear)])
    return model
