"""Subcommands that take a MODEL: `foresight export` (and, from other modules' helpers, sample and chat).

MODEL is a run directory, a Hugging Face folder, a .gguf file or a built-in name (see foresight.model.load).
Each subcommand has its own `_register_<name>(sub)` below; `register` calls them all. Add new ones by appending a
`_register_<name>` function and one line in `register`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

MODEL_HELP = "a run directory, a Hugging Face folder, a .gguf file, or a built-in name (smollm2-135m-instruct)"


def register(sub: argparse._SubParsersAction) -> None:
    _register_export(sub)


# ----- foresight export ----------------------------------------------------------------------------------------------


def _register_export(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "export", help="export a model as a Hugging Face folder",
        description="Write MODEL as a Hugging Face Llama folder (model.safetensors, config.json, tokenizer) that "
                    "transformers.AutoModelForCausalLM / AutoTokenizer load. muP scalars are folded into the weights, "
                    "so the logits are the same. Refuses to write into a non-empty --out.",
    )
    p.add_argument("model", metavar="MODEL", help=MODEL_HELP)
    p.add_argument("--format", dest="fmt", default="hf", choices=["hf"], help="output format (default: hf)")
    p.add_argument("--out", required=True, help="folder to create (must not exist, or be empty)")
    p.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                   help="weight dtype in the export (default float32: exact)")
    p.set_defaults(func=_export)


def _export(args: argparse.Namespace) -> int:
    from foresight.model.export import DTYPES, export_model

    out = export_model(args.model, Path(args.out), args.fmt, DTYPES[args.dtype])
    print(f"wrote {out} (load it with transformers.AutoModelForCausalLM.from_pretrained({str(out)!r}))")
    return 0
