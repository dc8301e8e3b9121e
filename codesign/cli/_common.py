"""Shared CLI plumbing: consoles, the error boundary, number formatting, JSON output."""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import math
import os
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import typer
from rich.console import Console
from rich.markup import escape
from typer._click.exceptions import NoArgsIsHelpError, UsageError
from typer.core import TyperGroup

from codesign.errors import CodesignError

#: Results go to stdout; errors, warnings and progress to stderr.
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
if not out.is_terminal and "COLUMNS" not in os.environ:
    out.width = 160  # piped or captured output: don't squeeze tables into 80 columns

#: Exit code of `optimize` and `report` when no trial met every constraint (an empty front);
#: the outputs are still written and stderr says, per constraint, how close the best design came.
EXIT_EMPTY_FRONT = 3

STATE = {"debug": os.environ.get("CODESIGN_DEBUG", "") not in ("", "0")}

F = TypeVar("F", bound=Callable[..., Any])

#: OSErrors that a user's path causes (the file name is in the error): reported in one line.
_PATH_ERRNOS = {
    errno.ENAMETOOLONG,
    errno.ENOENT,
    errno.ENOTDIR,
    errno.EISDIR,
    errno.EACCES,
    errno.EPERM,
    errno.EROFS,
    errno.ELOOP,
    errno.ENOSPC,
}


def boundary(fn: F) -> F:
    """Turn a :class:`CodesignError`, or an OSError the system raised for a path the user gave
    (too long, missing folder, no permission: it names the file), into one red line on stderr
    and exit code 1.

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
        except OSError as exc:
            # a path the user gave that the system refuses (too long, missing folder, no
            # permission): one line naming the file; any other OSError keeps its traceback
            if STATE["debug"] or exc.errno not in _PATH_ERRNOS or not exc.filename:
                raise
            name = str(exc.filename)
            shown = name if len(name) <= 240 else f"{name[:120]}... ({len(name):,} characters)"
            message = f"{shown}: {exc.strerror} (fix: check the path and its folder)"
            err.print(f"[bold red]error:[/] {escape(message)}", markup=True, soft_wrap=True)
            raise typer.Exit(1) from None
        except KeyboardInterrupt:
            if STATE["debug"]:
                raise
            err.print("interrupted", style="yellow")
            raise typer.Exit(130) from None

    return wrapper  # type: ignore[return-value]


def check_number(value: float | None, option: str, *, example: str, maximum: float = 1e9) -> None:
    """A CLI float that must be finite and in (0, maximum]: one line naming the option if not."""
    if value is None:
        return
    if not (math.isfinite(value) and 0 < value <= maximum):
        raise CodesignError(
            f"{option} {value:g}: must be a positive finite number up to {maximum:g} "
            f"(fix: e.g. {option} {example})"
        )


def check_int(value: int | None, option: str, *, low: int, high: int, example: str) -> None:
    """A CLI integer that must lie in [low, high]: one line naming the option if not."""
    if value is None:
        return
    if not low <= value <= high:
        shown = str(value) if abs(value) < 10**30 else f"<{len(str(abs(value)))}-digit integer>"
        raise CodesignError(
            f"{option} {shown}: must be an integer from {low:,} to {high:,} "
            f"(fix: e.g. {option} {example})"
        )


class OneLineUsageGroup(TyperGroup):
    """The root command group: a usage error (unknown option, a value of the wrong type) prints
    one line on stderr and exits 2, like every other error, instead of a boxed panel."""

    def make_context(self, *args: Any, **kwargs: Any) -> Any:
        with _one_line_usage():
            return super().make_context(*args, **kwargs)

    def invoke(self, ctx: Any) -> Any:
        with _one_line_usage():
            return super().invoke(ctx)


@contextlib.contextmanager
def _one_line_usage() -> Iterator[None]:
    try:
        yield
    except NoArgsIsHelpError:
        raise
    except UsageError as exc:
        where = f" (see '{exc.ctx.command_path} --help')" if exc.ctx is not None else ""
        message = " ".join(exc.format_message().split())
        err.print(f"[bold red]usage:[/] {escape(message)}{escape(where)}", soft_wrap=True)
        raise typer.Exit(exc.exit_code) from None


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
