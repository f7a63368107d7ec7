"""The `foresight` command. Each package registers its own subcommands; this file only wires them together.

A package's `commands.py` exposes `register(subparsers)`, which adds its subcommands and sets `func` on each parser
to a callable taking the parsed `argparse.Namespace` and returning an exit code (or None for 0).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from foresight.errors import ForesightError

# Packages whose commands.py adds subcommands, in the order they appear in --help.
COMMAND_MODULES = [
    "foresight.data.commands",
    "foresight.train.commands",
    "foresight.serve.commands",
    "foresight.weights.commands",
    "foresight.scaling.commands",
    "foresight.scaling.pipeline_commands",
    "foresight.evals.commands",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="foresight",
        description="Train language models, forecast a big run's loss from small ones, evaluate, align and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # that package has no commands yet
                continue
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    from foresight.runtime import keep_freed_memory, passive_thread_waits

    passive_thread_waits()  # before anything imports torch
    keep_freed_memory()
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0 if args.command is None else 2
    try:
        code = args.func(args)
    except ForesightError as e:
        print(f"error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return 0
    return int(code or 0)


if __name__ == "__main__":
    sys.exit(main())
