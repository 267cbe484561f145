"""Text from data or a model, made safe to print on a terminal.

A dataset row, a model's answer or a run file may hold terminal control characters: an ESC
sequence can write the clipboard (OSC 52), retitle the window, clear the screen or plant a
hyperlink; a carriage return or backspace can overwrite what was printed before. And Rich reads
`[...]` as markup, so `[/x]` crashes it and `[bold]` restyles text. Everything that came from data
or a model goes through `inert` (Rich) or `clean` (plain print) on its way to the terminal.
"""

from __future__ import annotations

from rich.text import Text

# C0 controls but newline and tab, DEL, and the C1 controls (0x9b is CSI on 8-bit terminals).
CONTROL_CODES = tuple(c for c in range(32) if c not in (ord("\n"), ord("\t"))) + (0x7F,) + tuple(range(0x80, 0xA0))
# Shown as Python writes them ("\x1b"): visible, so the reader sees that the data held one.
_ESCAPED = {c: f"\\x{c:02x}" for c in CONTROL_CODES}
# One space each, where character offsets must stay valid (the viewer's needle spans).
_BLANKED = {c: " " for c in CONTROL_CODES}
_BLANKED_WITH_TAB = _BLANKED | {ord("\t"): " "}


def clean(value: object) -> str:
    """`value` as text with every control character but newline and tab written out as `\\xNN`,
    so that no ESC sequence reaches the terminal (its remaining characters are plain text)."""
    return str(value).translate(_ESCAPED)


def one_line(value: object) -> str:
    """`clean`, with newlines and tabs written out too: for a label or a message that must stay on
    one line (a sample id, a row reference)."""
    return clean(value).replace("\n", "\\n").replace("\t", "\\t")


def blanked(value: str, keep_tabs: bool = False) -> str:
    """`value` with each control character (and tab, unless `keep_tabs`) replaced by one space:
    the same length, so offsets into the original stay valid."""
    return value.translate(_BLANKED if keep_tabs else _BLANKED_WITH_TAB)


def inert(value: object, style: str = "") -> Text:
    """`value` as a Rich `Text` that is shown exactly as written: `clean`ed, and never read as markup
    (a `Text` is not parsed; `[/x]` stays `[/x]`)."""
    return Text(clean(value), style=style, end="")
