"""The muP coordinate check: does every layer's activation size stay put as the model gets wider?

Under a correct maximal update parametrization, a few Adam steps change every activation coordinate by an amount that
does not depend on width, so the mean |activation| of each layer, measured after training steps, is (nearly) the same
for a width-64 model as for a width-1024 one. Under standard parametrization with the same learning rate the
output-side activations grow with width (and a wide model eventually diverges at a rate the narrow one tolerates);
that is why a learning rate tuned on a small SP model does not transfer.

    result = coord_check("mup", widths=(64, 128, 256, 512, 1024))
    result.spread()     # {layer: max/min of mean |act| across widths} at the last step

This module measures and plots; `tests/test_mup.py` asserts. The figure in docs/ is made with

    python -m foresight.model.coord_check --plot docs/mup_coord_check.png
"""

from __future__ import annotations

import argparse
import inspect
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from foresight.model.config import ModelConfig
from foresight.model.transformer import Transformer

BYTE_VOCAB = 256


def text_tokens(num_bytes: int = 200_000) -> torch.Tensor:
    """Real text as tokens: the bytes of Python standard-library sources, one token per byte (vocab 256).

    Byte tokens need no tokenizer and give a fixed-size vocabulary, so the only thing that changes across the widths
    being compared is the width itself.
    """
    stdlib = Path(inspect.getfile(inspect)).parent
    data = bytearray()
    for name in ("inspect.py", "typing.py", "argparse.py", "dataclasses.py"):  # large, stable, always installed
        data += (stdlib / name).read_bytes()
        if len(data) >= num_bytes:
            break
    return torch.tensor(list(data[:num_bytes]), dtype=torch.long)


def sample_batches(tokens: torch.Tensor, n: int, batch_size: int, seq_len: int, seed: int) -> list[torch.Tensor]:
    """n batches of random windows [batch_size, seq_len + 1] (inputs and their next-token targets)."""
    gen = torch.Generator().manual_seed(seed)
    starts = torch.randint(0, len(tokens) - seq_len - 1, (n, batch_size), generator=gen)
    return [torch.stack([tokens[s: s + seq_len + 1] for s in row.tolist()]) for row in starts]


def layer_modules(model: Transformer) -> dict[str, torch.nn.Module]:
    """The modules whose outputs the check records, by name, in forward order. 'logits' is the whole model, so the
    recorded value includes the output multiplier (the lm_head module's own output does not)."""
    modules: dict[str, torch.nn.Module] = {"embed": model.embed}
    for i, block in enumerate(model.blocks):
        modules[f"block{i}.attn"] = block.attn
        modules[f"block{i}.mlp"] = block.mlp
        modules[f"block{i}.resid"] = block  # the residual stream after the block
    modules["logits"] = model
    return modules


@contextmanager
def record_mean_abs(model: Transformer):
    """Within the block, every forward pass of `model` stores mean |output| of each layer in the yielded dict."""
    record: dict[str, float] = {}
    handles = []
    for name, module in layer_modules(model).items():
        def hook(_module, _inputs, output, name=name):
            record[name] = output.detach().abs().mean().item()
        handles.append(module.register_forward_hook(hook))
    try:
        yield record
    finally:
        for h in handles:
            h.remove()


def config_for_width(width: int, parametrization: str, *, n_layers: int = 2, head_dim: int | None = 32,
                     n_heads: int | None = None, mup_base_width: int = 64, vocab_size: int = BYTE_VOCAB,
                     seq_len: int = 64) -> ModelConfig:
    """The family of models the check compares: only d_model (and with it n_heads and d_ff) changes.

    head_dim is held fixed and the number of heads grows with width, as in practice (GPT-3, Llama and the muP paper's
    Transformer experiments all widen by adding heads). The 1/d attention scale still matters: it is normalised to
    standard attention at mup_base_head_dim, so it is exercised whenever head_dim differs from that.
    """
    n_heads = n_heads or width // head_dim
    return ModelConfig(vocab_size=vocab_size, d_model=width, n_layers=n_layers, n_heads=n_heads,
                       max_seq_len=seq_len, parametrization=parametrization, mup_base_width=mup_base_width)


@dataclass
class CoordCheck:
    """mean_abs[layer][step][i] = mean |output| of `layer` in the forward pass after `step` Adam steps, width i."""

    parametrization: str
    widths: list[int]
    steps: int
    mean_abs: dict[str, list[list[float]]] = field(default_factory=dict)
    losses: list[list[float]] = field(default_factory=list)  # losses[i][step], width i

    @property
    def layers(self) -> list[str]:
        return list(self.mean_abs)

    def spread(self, step: int = -1) -> dict[str, float]:
        """max / min of mean |act| across widths, per layer, at `step` (default: after the last update)."""
        return {name: max(v[step]) / min(v[step]) for name, v in self.mean_abs.items()}

    def growth(self, step: int = -1) -> dict[str, float]:
        """mean |act| at the widest model / at the narrowest, per layer: > 1 grows with width, < 1 shrinks."""
        return {name: v[step][-1] / v[step][0] for name, v in self.mean_abs.items()}


def coord_check(parametrization: str = "mup", widths=(64, 128, 256, 512, 1024), *, steps: int = 4,
                lr: float = 3e-3, n_layers: int = 2, head_dim: int | None = 32, n_heads: int | None = None,
                mup_base_width: int = 64,
                batch_size: int = 4, seq_len: int = 64, seed: int = 0, use_lr_mult: bool = True,
                output_mult_follows_width: bool = False) -> CoordCheck:
    """Train one model per width for `steps` AdamW steps at learning rate `lr` (each group's rate = lr x its
    `lr_mult`) on the same byte-level text batches, recording mean |activation| of every layer at every step.

    Every width starts from the same seed and sees the same batches. The default lr is modest on purpose: at 1e-2
    the first steps grow activations ~100x, which amplifies the finite-size noise of the narrowest model (width 64
    has two heads) until it, not the parametrization, dominates the spread. The two ablation switches exist to show the
    check is not vacuous: `use_lr_mult=False` drops muP's per-group learning rates (every group at lr);
    `output_mult_follows_width=True` cancels muP's 1/width_mult logit multiplier.
    """
    tokens = text_tokens()
    batches = sample_batches(tokens, steps + 1, batch_size, seq_len, seed)
    result = CoordCheck(parametrization, list(widths), steps)
    for width in widths:
        cfg = config_for_width(width, parametrization, n_layers=n_layers, head_dim=head_dim, n_heads=n_heads,
                               mup_base_width=mup_base_width, seq_len=seq_len)
        if output_mult_follows_width:
            cfg.output_mult = cfg.width_mult
        torch.manual_seed(seed)
        model = Transformer(cfg)
        groups = model.param_groups(weight_decay=0.0)
        for g in groups:
            g["lr"] = lr * (g["lr_mult"] if use_lr_mult else 1.0)
        opt = torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), weight_decay=0.0)
        per_step: list[dict[str, float]] = []
        losses = []
        with record_mean_abs(model) as record:
            for step, batch in enumerate(batches):
                logits = model(batch[:, :-1])
                loss = F.cross_entropy(logits.flatten(0, 1), batch[:, 1:].flatten())
                per_step.append(dict(record))
                losses.append(loss.item())
                if step == steps:  # the last forward only measures
                    break
                loss.backward()
                opt.step()
                opt.zero_grad(set_to_none=True)
        result.losses.append(losses)
        for name in per_step[0]:
            result.mean_abs.setdefault(name, []).append([r[name] for r in per_step])
    # Stored per width above; transpose to [layer][step][width] so a step's values across widths are one list.
    result.mean_abs = {name: [list(col) for col in zip(*per_width)] for name, per_width in result.mean_abs.items()}
    return result


# ----- the figure ----------------------------------------------------------------------------------------------------


def plot(results: list[CoordCheck], path: Path) -> None:
    """One row per parametrization, one panel per layer: mean |activation| against width, one line per step."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display needed
    import matplotlib.pyplot as plt

    layers = results[0].layers
    fig, axes = plt.subplots(len(results), len(layers), figsize=(2.2 * len(layers), 2.4 * len(results)),
                             sharex=True, squeeze=False)
    for row, result in zip(axes, results):
        colors = plt.cm.viridis([i / max(result.steps, 1) for i in range(result.steps + 1)])
        for ax, name in zip(row, layers):
            for step, values in enumerate(result.mean_abs[name]):
                ax.plot(result.widths, values, marker=".", color=colors[step], label=f"step {step}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{result.parametrization.upper()}: {name}", fontsize=8)
            ax.tick_params(labelsize=7)
        row[0].set_ylabel("mean |activation|", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("width (d_model)", fontsize=8)
    axes[0][-1].legend(fontsize=6)
    fig.suptitle("Coordinate check: flat lines = activation size independent of width", fontsize=10)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="muP coordinate check: muP vs standard parametrization")
    parser.add_argument("--plot", type=Path, help="write the figure here (PNG)")
    parser.add_argument("--widths", default="64,128,256,512,1024")
    parser.add_argument("--steps", type=int, default=4)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]
    results = [coord_check(p, widths, steps=args.steps, lr=args.lr, seed=args.seed) for p in ("mup", "sp")]
    for r in results:
        spread = r.spread()
        worst = max(spread, key=spread.get)
        print(f"{r.parametrization}: largest max/min of mean |act| across widths {spread[worst]:.2f} ({worst}); "
              f"widest/narrowest per layer: " + ", ".join(f"{k} {v:.2f}" for k, v in r.growth().items()))
    if args.plot:
        plot(results, args.plot)
        print(f"wrote {args.plot}")


if __name__ == "__main__":
    main()
