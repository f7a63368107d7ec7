"""A Llama-style decoder-only Transformer, readable in one sitting.

RMSNorm -> attention (rotary positions, grouped-query heads, SDPA) -> RMSNorm -> SwiGLU MLP, repeated; then a final
RMSNorm and the output projection. Two parametrizations: standard (what Hugging Face checkpoints use) and muP
(maximal update parametrization), under which the best learning rate found on a narrow model stays best on a wide
one. This file knows nothing about optimizers' internals, data, devices or parallelism.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from foresight.model.config import ModelConfig


class RMSNorm(nn.Module):
    def __init__(self, dim: int, eps: float):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Normalise in float32 (as Llama does) so bf16 activations do not lose the mean square.
        normed = F.rms_norm(x.float(), (x.shape[-1],), eps=self.eps).type_as(x)
        return normed * self.weight


class RotaryEmbedding(nn.Module):
    """Rotary position embedding tables, in Llama's "rotate half" layout."""

    def __init__(self, head_dim: int, max_seq_len: int, theta: float):
        super().__init__()
        inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim))
        angles = torch.outer(torch.arange(max_seq_len, dtype=torch.float64), inv_freq)
        angles = torch.cat([angles, angles], dim=-1)
        self.register_buffer("cos", angles.cos().float(), persistent=False)
        self.register_buffer("sin", angles.sin().float(), persistent=False)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [B, T] -> cos, sin of shape [B, 1, T, head_dim], ready to broadcast over heads (the caller
        checks that positions are below max_seq_len)."""
        return self.cos[positions].unsqueeze(1), self.sin[positions].unsqueeze(1)


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos.to(x.dtype) + rotated * sin.to(x.dtype)


class KVCache:
    """Pre-allocated keys and values for every layer, one row per sequence ("slot").

    Each row holds its own number of tokens, `lengths[b]`, and a forward pass writes its T new tokens at each row's
    own offset, slots lengths[b] .. lengths[b] + T - 1. So rows of different lengths decode together without left
    padding, and a server can give a row to a new request between steps (`reset`) or drop rows (`reorder`). Slots
    past a row's length may hold stale values: the default attention mask hides them and later tokens overwrite
    them. `lengths` lives on the device, where position ids and masks are built from it; `host_lengths`, a copy on
    the host, says how far to slice the keys and whether every row is at the same length (the fast paths) without
    waiting for the device.
    """

    def __init__(self, cfg: ModelConfig, batch_size: int, max_len: int, device=None, dtype=torch.float32):
        shape = (batch_size, cfg.n_kv_heads, max_len, cfg.head_dim)
        self.keys = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.values = [torch.zeros(shape, device=device, dtype=dtype) for _ in range(cfg.n_layers)]
        self.max_len = max_len
        self.set_lengths(0)

    @property
    def longest(self) -> int:
        return max(self.host_lengths)

    @property
    def equal_lengths(self) -> bool:
        return min(self.host_lengths) == max(self.host_lengths)

    def set_lengths(self, lengths: int | Sequence[int]) -> None:
        """Say how many tokens each row holds (an int: every row the same); what lies past them is ignored."""
        batch = self.keys[0].shape[0]
        lengths = [lengths] * batch if isinstance(lengths, int) else [int(n) for n in lengths]
        if len(lengths) != batch or not all(0 <= n <= self.max_len for n in lengths):
            raise ValueError(f"lengths {lengths} do not fit a cache of {batch} rows x {self.max_len} slots")
        self.host_lengths = lengths
        self.lengths = torch.tensor(lengths, device=self.keys[0].device)
        self._slots = None

    def reset(self, row: int) -> None:
        """Empty one row, e.g. to give its slot to a new sequence."""
        self.set_lengths([0 if b == row else n for b, n in enumerate(self.host_lengths)])

    def reorder(self, rows: Sequence[int]) -> None:
        """Keep only the given batch rows, in this order (e.g. after some sequences finish)."""
        rows = [int(r) for r in rows]
        index = torch.tensor(rows, device=self.keys[0].device)
        self.keys = [k[index] for k in self.keys]
        self.values = [v[index] for v in self.values]
        self.set_lengths([self.host_lengths[r] for r in rows])

    def view(self, rows: int) -> "KVCache":
        """The first `rows` rows as a cache of their own that shares this one's memory (its writes land here); its
        lengths start at 0. A server keeps its running sequences in the first rows and decodes them through a view,
        so a free row costs no compute."""
        view = KVCache.__new__(KVCache)
        view.keys = [k[:rows] for k in self.keys]
        view.values = [v[:rows] for v in self.values]
        view.max_len = self.max_len
        view.set_lengths(0)
        return view

    def copy_row(self, dst: int, source: "KVCache", src: int, length: int) -> None:
        """Copy the first `length` slots of row `src` of `source` (which may be this cache) into row `dst`."""
        for mine, theirs in zip(self.keys + self.values, source.keys + source.values):
            mine[dst, :, :length] = theirs[src, :, :length]

    def grow(self, max_len: int) -> None:
        """Make room for `max_len` slots per row, keeping what is stored (so a cache can start small)."""
        if max_len <= self.max_len:
            return
        def grown(t: torch.Tensor) -> torch.Tensor:
            bigger = t.new_zeros(t.shape[:2] + (max_len,) + t.shape[3:])
            bigger[:, :, : self.max_len] = t
            return bigger
        self.keys = [grown(k) for k in self.keys]
        self.values = [grown(v) for v in self.values]
        self.max_len = max_len

    def new_slots(self, n: int) -> torch.Tensor:
        """[B, n]: the slots the next n tokens of each row go to, which are also their default position ids."""
        if self._slots is None or self._slots.shape[1] != n:  # built once per forward, not once per layer
            self._slots = self.lengths[:, None] + torch.arange(n, device=self.lengths.device)
        return self._slots

    def update(self, layer: int, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v [B, kv_heads, T, head_dim] after each row's tokens; return every row's keys and values up to
        the longest row's new end (a shorter row's slots past its own end are for the mask to hide)."""
        T = k.shape[2]
        end = self.longest + T
        if end > self.max_len:
            raise ValueError(f"KV cache is full: {end} tokens > {self.max_len}")
        if self.equal_lengths:  # one offset for every row: a plain slice
            start = self.host_lengths[0]
            self.keys[layer][:, :, start:end] = k
            self.values[layer][:, :, start:end] = v
        else:
            index = self.new_slots(T)[:, None, :, None].expand_as(k)
            self.keys[layer].scatter_(2, index, k)
            self.values[layer].scatter_(2, index, v)
        return self.keys[layer][:, :, :end], self.values[layer][:, :, :end]

    def advance(self, n: int) -> None:
        """Count the n tokens of a forward pass as stored (called once all layers have stored them)."""
        self.host_lengths = [length + n for length in self.host_lengths]
        self.lengths = self.lengths + n
        self._slots = None


class Attention(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.layer = layer
        self.n_heads, self.n_kv_heads, self.head_dim = cfg.n_heads, cfg.n_kv_heads, cfg.head_dim
        self.scale = cfg.attn_scale
        # One fused projection for queries, keys and values: fewer, larger matmuls.
        self.qkv = nn.Linear(cfg.d_model, (cfg.n_heads + 2 * cfg.n_kv_heads) * cfg.head_dim, bias=False)
        self.out = nn.Linear(cfg.n_heads * cfg.head_dim, cfg.d_model, bias=False)

    def forward(self, x, cos, sin, cache: KVCache | None, mask: torch.Tensor | None, causal: bool):
        B, T, _ = x.shape
        q, k, v = self.qkv(x).split(
            [self.n_heads * self.head_dim, self.n_kv_heads * self.head_dim, self.n_kv_heads * self.head_dim], dim=-1
        )
        q = q.view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        k = k.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        v = v.view(B, T, self.n_kv_heads, self.head_dim).transpose(1, 2)
        q, k = apply_rotary(q, cos, sin), apply_rotary(k, cos, sin)
        if cache is not None:
            k, v = cache.update(self.layer, k, v)
        y = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, is_causal=causal, scale=self.scale,
            enable_gqa=self.n_kv_heads != self.n_heads,
        )
        return self.out(y.transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        self.d_ff = cfg.d_ff
        self.gate_up = nn.Linear(cfg.d_model, 2 * cfg.d_ff, bias=False)  # gate and up projections, fused
        self.down = nn.Linear(cfg.d_ff, cfg.d_model, bias=False)

    def forward(self, x):
        gate, up = self.gate_up(x).split(self.d_ff, dim=-1)
        return self.down(F.silu(gate) * up)


class Block(nn.Module):
    def __init__(self, cfg: ModelConfig, layer: int):
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.attn = Attention(cfg, layer)
        self.mlp_norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.mlp = SwiGLU(cfg)

    def forward(self, x, cos, sin, cache, mask, causal):
        x = x + self.attn(self.attn_norm(x), cos, sin, cache, mask, causal)
        return x + self.mlp(self.mlp_norm(x))


class Transformer(nn.Module):
    def __init__(self, cfg: ModelConfig):
        super().__init__()
        if cfg.vocab_size <= 0:
            raise ValueError("ModelConfig.vocab_size must be set (> 0) before building the model")
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.blocks = nn.ModuleList(Block(cfg, i) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model, cfg.norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        if cfg.tie_embeddings:
            self.lm_head.weight = self.embed.weight
        self.rotary = RotaryEmbedding(cfg.head_dim, cfg.max_seq_len, cfg.rope_theta)
        # Logit multiplier: muP divides the readout by the width multiplier so logits stay O(1) as width grows.
        self.logit_scale = cfg.output_mult / cfg.width_mult
        self.reset_parameters()

    # ----- parametrization -------------------------------------------------------------------------------------

    def reset_parameters(self, generator: torch.Generator | None = None) -> None:
        """Initialise weights. Hidden matrices get std init_std / sqrt(width_mult) (variance ~ 1/fan_in under muP;
        plain init_std under SP); projections back into the residual stream are further divided by sqrt(2 * depth)
        (GPT-2's rule) so the residual stream does not grow with depth."""
        cfg = self.cfg
        hidden_std = cfg.init_std / math.sqrt(cfg.width_mult)
        nn.init.normal_(self.embed.weight, std=cfg.init_std, generator=generator)
        if not cfg.tie_embeddings:
            nn.init.normal_(self.lm_head.weight, std=cfg.init_std, generator=generator)
        for block in self.blocks:
            nn.init.normal_(block.attn.qkv.weight, std=hidden_std, generator=generator)
            nn.init.normal_(block.mlp.gate_up.weight, std=hidden_std, generator=generator)
            nn.init.normal_(block.attn.out.weight, std=hidden_std / math.sqrt(2 * cfg.n_layers), generator=generator)
            nn.init.normal_(block.mlp.down.weight, std=hidden_std / math.sqrt(2 * cfg.n_layers), generator=generator)
            nn.init.ones_(block.attn_norm.weight)
            nn.init.ones_(block.mlp_norm.weight)
        nn.init.ones_(self.norm.weight)

    def param_groups(self, weight_decay: float) -> list[dict]:
        """Optimizer parameter groups. Each carries `lr_mult`, the factor on the base learning rate.

        Under muP with Adam, matrix-like weights (both dimensions grow with width) learn at lr / width_mult, while
        vector-like ones (embedding, readout, norm gains: one dimension fixed) keep the base rate. Weight decay
        applies to matrices only, never to norm gains.
        """
        m = self.cfg.width_mult
        hidden = [p for b in self.blocks for p in (b.attn.qkv.weight, b.attn.out.weight, b.mlp.gate_up.weight,
                                                     b.mlp.down.weight)]
        norms = [p for b in self.blocks for p in (b.attn_norm.weight, b.mlp_norm.weight)] + [self.norm.weight]
        vector_like = [self.embed.weight] + ([] if self.cfg.tie_embeddings else [self.lm_head.weight])
        groups = [
            {"name": "hidden", "params": hidden, "lr_mult": 1.0 / m, "weight_decay": weight_decay},
            {"name": "embeddings", "params": vector_like, "lr_mult": 1.0, "weight_decay": weight_decay},
            {"name": "norms", "params": norms, "lr_mult": 1.0, "weight_decay": 0.0},
        ]
        assert sum(len(g["params"]) for g in groups) == len(list(self.parameters())), "a parameter has no group"
        return groups

    # ----- sizes ------------------------------------------------------------------------------------------------

    def num_params(self) -> int:
        return sum(p.numel() for p in self.parameters())

    def num_non_embedding_params(self) -> int:
        """Parameters outside the token embedding and the output projection (Kaplan et al.'s N)."""
        embedding = self.embed.weight.numel() + (0 if self.cfg.tie_embeddings else self.lm_head.weight.numel())
        return self.num_params() - embedding

    # ----- forward ----------------------------------------------------------------------------------------------

    def hidden_states(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        embeds: torch.Tensor | None = None,
        embeds_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The final-norm hidden states [B, T, d_model] for tokens [B, T]: everything before the output head.

        positions: [B, T] position ids (default: each row continues from its length in the cache, or 0..T-1).
        cache: a KVCache to read earlier keys/values from and append this call's to.
        attn_mask: boolean [B, 1, T, S] (True = may attend), S = the longest cached row + T; by default row b's
            query t sees cache slots up to lengths[b] + t, i.e. its cached tokens and its new tokens causally.
        embeds, embeds_mask: externally computed input vectors (e.g. from a vision encoder) that replace the token
            embeddings where embeds_mask [B, T] is True; embeds holds one row of size d_model per True position.
        """
        B, T = tokens.shape
        x = self.embed(tokens)
        if self.cfg.embed_mult != 1.0:  # token embeddings only: external `embeds` come from their own projector
            x = x * self.cfg.embed_mult
        if embeds is not None:
            x = x.masked_scatter(embeds_mask.unsqueeze(-1), embeds.to(x.dtype))
        if positions is None:
            positions = cache.new_slots(T) if cache is not None else torch.arange(T, device=tokens.device).expand(B, T)
            last = (cache.longest if cache is not None else 0) + T - 1  # known on the host: no wait for the device
        else:
            last = int(positions.max())
        if last >= self.cfg.max_seq_len:
            raise ValueError(f"position {last} is beyond max_seq_len {self.cfg.max_seq_len}")
        cos, sin = self.rotary(positions)
        causal = False
        if attn_mask is None:
            if cache is None or cache.longest == 0:
                causal = T > 1  # nothing cached: SDPA's fast causal path (a single token needs no mask)
            elif T > 1 or not cache.equal_lengths:  # (one token after rows of equal length sees every slot)
                # Row b's query t sees slots up to lengths[b] + t: its own tokens, never a shorter row's stale ones.
                slots = torch.arange(cache.longest + T, device=tokens.device)
                attn_mask = (slots <= cache.new_slots(T)[:, :, None]).unsqueeze(1)
        for block in self.blocks:
            x = block(x, cos, sin, cache, attn_mask, causal)
        if cache is not None:
            cache.advance(T)
        return self.norm(x)

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Next-token logits [..., vocab] from final-norm hidden states [..., d_model] (the output head)."""
        logits = self.lm_head(hidden)
        return logits * self.logit_scale if self.logit_scale != 1.0 else logits

    def forward(
        self,
        tokens: torch.Tensor,
        *,
        positions: torch.Tensor | None = None,
        cache: KVCache | None = None,
        attn_mask: torch.Tensor | None = None,
        embeds: torch.Tensor | None = None,
        embeds_mask: torch.Tensor | None = None,
        last_only: bool = False,
    ) -> torch.Tensor:
        """Next-token logits [B, T, vocab] for tokens [B, T]: `hidden_states`, then `logits`.

        last_only: return logits for the last position only ([B, 1, vocab]), all a generation step needs: it skips
        the output projection of every other position. Other arguments as for `hidden_states`.
        """
        hidden = self.hidden_states(tokens, positions=positions, cache=cache, attn_mask=attn_mask, embeds=embeds,
                                    embeds_mask=embeds_mask)
        return self.logits(hidden[:, -1:] if last_only else hidden)
