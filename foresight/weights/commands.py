"""`foresight export`, and the MODEL argument every command that takes a model shares.

MODEL is a run directory, a Hugging Face folder, a .gguf file or a built-in name (see foresight.weights.load).
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_HELP = "a run directory, a Hugging Face folder, a .gguf file, or a built-in name (smollm2-135m-instruct)"


WEIGHTS_HELP = ("weights for inference: float (default, exact) or int8 (one scale per output row, 4x fewer bytes: "
                "one-stream decoding ~2x faster on a CPU, long prompts ~1.3x slower, loss ~0.2%% higher)")


def model_parser(sub: argparse._SubParsersAction, name: str, help: str, description: str, optional: bool = False,
                 weights: bool = True):
    """A subcommand whose first argument is a MODEL (`optional`: it may be left out, e.g. when another flag says
    where the model is). `weights`: add --weights (see add_weights_option), for commands that run the model."""
    p = sub.add_parser(name, help=help, description=description)
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP, nargs="?" if optional else None)
    if weights:
        add_weights_option(p)
    return p


def add_weights_option(p: argparse.ArgumentParser) -> None:
    """--weights float|int8, parsed into `args.quantize`: None or "int8", what load_model's `quantize` takes
    (`load_model(args.model, quantize=args.quantize)`)."""
    p.add_argument("--weights", dest="quantize", type=_weights, default=None, metavar="{float,int8}",
                   help=WEIGHTS_HELP)


def _weights(text: str) -> str | None:
    from foresight.weights.load import QUANTIZE_MODES

    if text == "float":
        return None
    if text in QUANTIZE_MODES:
        return text
    raise argparse.ArgumentTypeError(f"must be float or {' or '.join(QUANTIZE_MODES)}, not {text!r}")


def register(sub: argparse._SubParsersAction) -> None:
    _register_export(sub)


# ----- foresight export ----------------------------------------------------------------------------------------------


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = model_parser(
        sub, "export", "export a model as a Hugging Face folder",
        "Write MODEL as a Hugging Face Llama folder (model.safetensors, config.json, tokenizer) that "
        "transformers.AutoModelForCausalLM / AutoTokenizer load. muP scalars are folded into the weights, "
        "so the logits are the same. Refuses to write into a non-empty --out.",
        weights=False,  # an export writes float weights (--dtype)
    )
    p.add_argument("--format", dest="fmt", default="hf", choices=["hf"], help="output format (default: hf)")
    p.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight dtype in the export (default float32: exact)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from foresight.weights.export import DTYPES, export_model

    out = export_model(args.model, Path(args.out), args.fmt, DTYPES[args.dtype])
    print(f"wrote {out} (load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0
