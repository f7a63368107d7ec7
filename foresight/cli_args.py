"""Range-checked argparse types shared by the command modules: a bad value is refused by argparse, which names the
flag and the value, before any work starts."""

from __future__ import annotations

import argparse
import math


def int_in(lo: int, hi: int):
    """An argparse type: an int from lo to hi (argparse names the flag and the value when it is not)."""

    def parse(text: str) -> int:
        value = int(text)  # a ValueError here is argparse's "invalid int value"
        if not lo <= value <= hi:
            raise argparse.ArgumentTypeError(f"must be between {lo} and {hi}, not {value}")
        return value

    parse.__name__ = "int"
    return parse


def float_in(lo: float, hi: float, *, open_lo: bool = False, open_hi: bool = False):
    """An argparse type: a finite float from lo to hi (exclusive at an open end); nan and inf are refused."""

    def parse(text: str) -> float:
        value = float(text)  # a ValueError here is argparse's "invalid float value"
        above = value > lo if open_lo else value >= lo
        below = value < hi if open_hi else value <= hi
        if not (math.isfinite(value) and above and below):
            left, right = "(" if open_lo else "[", ")" if open_hi else "]"
            raise argparse.ArgumentTypeError(f"must be in {left}{lo}, {hi}{right}, not {text}")
        return value

    parse.__name__ = "float"
    return parse
