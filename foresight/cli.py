"""The `foresight` command. Each package registers its own subcommands; this file only wires them together.

A package's `commands.py` exposes `register(subparsers)`, which adds its subcommands and sets `func` on each parser
to a callable taking the parsed `argparse.Namespace` and returning an exit code (or None for 0).

Errors take one path: whatever a command raises is printed as one line, `error: ...`, and the exit status is
non-zero. A ForesightError is printed as it is; an OSError names its file; a command line that does not parse names
the flag; anything else is a bug, and the line says so, names the command and where to report it. Set
FORESIGHT_DEBUG=1 to get the traceback instead. A command module that fails to import leaves a placeholder
command, which says why it is unavailable; the other commands still work.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable

from foresight.errors import (REPORT_TO, ForesightError, InternalError, UnavailableCommand, UsageError,
                              from_decode_error, from_os_error, one_line)

# Modules whose register() adds subcommands, in the order they appear in --help, with the commands each adds: if a
# module fails to import, those commands are still listed, and say why they cannot run.
COMMAND_MODULES: dict[str, tuple[str, ...]] = {
    "foresight.data.commands": ("data",),
    "foresight.train.commands": ("train",),
    "foresight.serve.commands": ("sample", "chat"),
    "foresight.weights.commands": ("export",),
    "foresight.scaling.commands": ("fit", "predict", "ledger"),
    "foresight.scaling.pipeline_commands": ("ladder", "forecast"),
    "foresight.evals.commands": ("eval",),
    "foresight.align.commands": ("align",),
    "foresight.vlm.commands": ("vlm",),
}


def debug() -> bool:
    """FORESIGHT_DEBUG=1: let unexpected exceptions show their traceback."""
    return os.environ.get("FORESIGHT_DEBUG", "") not in ("", "0")


class Parser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are UsageErrors: printed as one line like every other error (and
    returned, not exited, by main(), so the CLI can be driven in-process)."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: {message} (see `{self.prog} --help`)")


def _unavailable(module: str, exc: BaseException):
    reason = one_line(f"{type(exc).__name__}: {exc}")

    def run(args: argparse.Namespace) -> int:
        raise UnavailableCommand(f"`foresight {args.command}` is unavailable: importing {module} failed with "
                                 f"{reason} (a broken install? reinstall Foresight: pip install -e .)")

    return run, reason


def build_parser() -> argparse.ArgumentParser:
    parser = Parser(
        prog="foresight",
        description="Train language models, forecast a big run's loss from small ones, evaluate, align and serve.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, commands in COMMAND_MODULES.items():
        try:
            module = importlib.import_module(name)
        except Exception as e:  # noqa: BLE001 -- any failure: the commands say why, the others still work
            if debug():
                raise
            run, reason = _unavailable(name, e)
            for command in commands:
                # Any arguments are accepted ("\x01" never starts one), so the placeholder is what reports.
                p = sub.add_parser(command, help=f"(unavailable: {name} failed to import: {reason})",
                                   add_help=False, prefix_chars="\x01")
                p.add_argument("rest", nargs=argparse.REMAINDER)
                p.set_defaults(func=run)
            continue
        module.register(sub)
    return parser


def _command_name(args: argparse.Namespace | None, argv: list[str] | None) -> str:
    """`foresight ladder plan`, from the parsed subcommands (or the first word of argv when parsing failed)."""
    if args is not None and getattr(args, "command", None):
        words = [args.command] + [v for k, v in sorted(vars(args).items())
                                  if k.endswith("_command") and isinstance(v, str)]
        return "foresight " + " ".join(words)
    argv = sys.argv[1:] if argv is None else argv
    return "foresight" + (f" {argv[0]}" if argv else "")


def main(argv: list[str] | None = None) -> int:
    from foresight.runtime import keep_freed_memory, passive_thread_waits

    passive_thread_waits()  # before anything imports torch
    keep_freed_memory()
    args = None
    try:
        parser = build_parser()
        try:
            args = parser.parse_args(argv)
        except SystemExit as e:  # --help, or argparse exiting on its own
            return e.code if isinstance(e.code, int) else 0
        if not getattr(args, "func", None):
            parser.print_help()
            return 0 if args.command is None else 2
        code = args.func(args)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # output piped into `head` and the like: not an error of ours
        sys.stderr.close()
        return 0
    except Exception as e:  # noqa: BLE001 -- the CLI's single error path
        return _report(e, _command_name(args, argv))
    return int(code or 0)


def run_script(main: Callable[[], int | None], name: str) -> int:
    """A script's `main` (scripts/*.py) through the CLI's error path: a problem the user can fix is one line naming
    it, not a traceback."""
    try:
        return int(main() or 0)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        return 130
    except Exception as e:  # noqa: BLE001 -- the same single error path as the CLI's
        return _report(e, name)


def _report(e: Exception, command: str) -> int:
    """Print what the user is told about `e` on one line and return the exit code (re-raise for FORESIGHT_DEBUG)."""
    error = _as_foresight_error(e, command)
    if error is None:
        raise e  # FORESIGHT_DEBUG: the traceback
    print(f"error: {one_line(str(error))}", file=sys.stderr)
    return error.exit_code


def _as_foresight_error(e: Exception, command: str) -> ForesightError | None:
    """What the user is told about `e`: None where FORESIGHT_DEBUG asks for the traceback."""
    if isinstance(e, ForesightError):
        return e
    if debug():
        return None
    if isinstance(e, OSError):
        return from_os_error(e)
    if isinstance(e, UnicodeDecodeError):
        return from_decode_error(e)
    if isinstance(e, ValueError) and "null byte" in str(e):  # os functions refuse a path with a NUL in it
        return ForesightError("a path given contains a NUL byte, which no file name can hold")
    if isinstance(e, MemoryError):
        return ForesightError(f"`{command}` ran out of memory: make the model, batch or input smaller")
    detail = one_line(f"{type(e).__name__}: {e}")
    if len(detail) > 300:
        detail = detail[:297] + "..."
    return InternalError(f"`{command}` failed unexpectedly ({detail}). This is a bug in Foresight: please report "
                         f"it to {REPORT_TO} with the command line and the traceback, which FORESIGHT_DEBUG=1 "
                         f"prints")


if __name__ == "__main__":
    sys.exit(main())
