"""Argument types and defaults of the command line: a bad value is argparse's one-line usage
error."""

from __future__ import annotations

import argparse
import math


def default(value, fallback):
    """``value`` unless it was not given (0 is a value: 0 steps is the return before adapting)."""
    return fallback if value is None else value


def positive_number(text: str) -> float:
    """An argparse type: a finite number > 0, else argparse's one-line usage error."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number, got {text}")
    return value


def positive_numbers(text: str) -> float | tuple[float, ...]:
    """An argparse type: one positive number, or several separated by commas."""
    values = tuple(positive_number(part) for part in text.split(","))
    return values[0] if len(values) == 1 else values


def count(minimum: int):
    """An argparse type: an integer >= minimum, else argparse's one-line usage error."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse
