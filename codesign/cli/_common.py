"""Shared CLI plumbing: consoles, the error boundary, number formatting, JSON output."""

from __future__ import annotations

import functools
import json
import os
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from codesign.errors import CodesignError

#: Results go to stdout; errors, warnings and progress to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or captured output: don't squeeze tables into 80 columns

STATE = {"debug": os.environ.get("CODESIGN_DEBUG", "") not in ("", "0")}

F = TypeVar("F", bound=Callable[..., Any])


def boundary(fn: F) -> F:
    """Turn a :class:`CodesignError` into one red line on stderr and exit code 1.

    With ``--debug`` (or ``CODESIGN_DEBUG=1``) the exception propagates with its traceback.
    """

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except CodesignError as exc:
            if STATE["debug"]:
                raise
            message = " ".join(str(exc).split())  # always one line
            # the message is text, not markup: "[low, high]" must print as written
            err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if STATE["debug"]:
                raise
            err.print("interrupted", style="yellow")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def print_json(data: Any) -> None:
    sys.stdout.write(json.dumps(data, indent=2, sort_keys=False) + "\n")


def human_count(value: float) -> str:
    """1234567 -> '1.23M' (SI prefixes, for counts such as MACs and params)."""
    return _scaled(value, 1000.0, ["", "K", "M", "G", "T", "P"])


def human_bytes(value: float) -> str:
    """Decimal units (kB = 1000 B), as the published tables use."""
    if value < 1000:
        return f"{value:.0f} B"
    return _scaled(value, 1000.0, [" B", " kB", " MB", " GB", " TB", " PB"])


def _scaled(value: float, base: float, units: list[str]) -> str:
    for unit in units:
        if abs(value) < base or unit == units[-1]:
            if unit in ("", " B"):
                return f"{value:,.0f}{unit}"
            return f"{value:.3g}{unit}"
        value /= base
    return str(value)
