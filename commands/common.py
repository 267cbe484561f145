"""What every command shares: option parsing helpers and one-line error handling."""

from __future__ import annotations

import contextlib
import os
import sys

import typer

from errors import RuntimeFailure, UsageError
from runtime.terminal_text import clean


def split_list(value: str) -> tuple[str, ...]:
    return tuple(v.strip() for v in value.split(",") if v.strip())


def parse_list(value: str, option: str, *, allow_empty: bool = False) -> tuple[str, ...]:
    """A comma-separated option's items; an empty item, a repeated item or (unless `allow_empty`)
    no item at all is a UsageError: `--tasks kv,kv` would run every session twice, `--tasks ""`
    nothing."""
    items = tuple(v.strip() for v in value.split(","))
    if items == ("",):
        if allow_empty:
            return ()
        raise UsageError(f"{option} is empty; give at least one comma-separated value")
    if "" in items:
        raise UsageError(f"{option} {value!r}: an item is empty; expected comma-separated values")
    repeated = sorted({v for v in items if items.count(v) > 1})
    if repeated:
        raise UsageError(f"{option} {value!r}: names {', '.join(repeated)} more than once; give each once")
    return items


@contextlib.contextmanager
def one_line_errors():
    """Known errors print one line (`SCBENCH_DEBUG=1` shows the traceback); usage errors exit 2, the
    rest (runtime failures, OS errors such as a full disk) exit 1."""
    try:
        yield
    except UsageError as err:
        if os.environ.get("SCBENCH_DEBUG") == "1":
            raise
        print(f"error: {clean(err)}", file=sys.stderr)
        raise typer.Exit(2) from None
    except RuntimeFailure as err:
        if os.environ.get("SCBENCH_DEBUG") == "1":
            raise
        print(f"error: {clean(err)}", file=sys.stderr)
        raise typer.Exit(1) from None
    except OSError as err:  # the machine, not the input: a full disk, a read-only folder, a dropped socket
        if os.environ.get("SCBENCH_DEBUG") == "1":
            raise
        print(f"error: {type(err).__name__}: {clean(err)}", file=sys.stderr)
        raise typer.Exit(1) from None
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        raise typer.Exit(130) from None
