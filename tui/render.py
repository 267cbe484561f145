"""The viewer's text work, free of Textual: needles in the context, word wrap with offsets, the kept map."""

from __future__ import annotations

import ast
import itertools
import math
import re
from dataclasses import dataclass
from statistics import mean
from typing import Any

from rich.cells import get_character_cell_size
from rich.text import Text

from runtime.terminal_text import blanked

MAX_SPANS = 200  # per needle: a short gold ("(B)", a number) may occur all over a long context
# A double-quoted string in the question: Retr.KV's key, Prefix-Suffix's prefix, a quoted name.
_QUOTED = re.compile(r'"([^"\n]{2,300})"|“([^”\n]{2,300})”')
SHADES = " ▁▂▃▄▅▆▇█"  # share 0 stays blank, so dropped KV reads as a gap


@dataclass(frozen=True)
class Needle:
    kind: str  # "key": quoted in the question; "gold": (a part of) the gold answer
    text: str
    spans: tuple[tuple[int, int], ...]  # character spans in the context, case-insensitive


def gold_items(gold: Any) -> list[str]:
    """The gold answer's parts: list items (Retr.MultiHop), the items of a string holding a Python
    list (Variable Tracking's fixtures), or the answer itself."""
    if isinstance(gold, str) and gold.startswith("["):
        try:
            gold = ast.literal_eval(gold)
        except (ValueError, SyntaxError):
            pass
    items = gold if isinstance(gold, (list, tuple)) else [gold]
    return [text for text in (str(item).strip() for item in items) if text]


def quoted(question: str) -> list[str]:
    return [m.group(1) or m.group(2) for m in _QUOTED.finditer(question)]


def find_needles(context: str, question: str, gold: Any) -> list[Needle]:
    """Where the turn's key (quoted in the question) and gold answer occur in the context."""
    wanted = dict.fromkeys([("key", q) for q in quoted(question)] + [("gold", g) for g in gold_items(gold)])
    needles = []
    for kind, text in wanted:
        found = itertools.islice(re.finditer(re.escape(text), context, re.IGNORECASE), MAX_SPANS)
        needles.append(Needle(kind, text, tuple(m.span() for m in found)))
    return needles


def focus_offset(needles: list[Needle]) -> int | None:
    """Where to scroll: the first key found (the gold sits next to it in Retr.KV), else the first gold."""
    for kind in ("key", "gold"):
        for needle in needles:
            if needle.kind == kind and needle.spans:
                return needle.spans[0][0]
    return None


def display_text(context: str) -> str:
    """The context as the terminal may print it, character for character (offsets stay valid): each
    control character (C0 but newline, tab, DEL, C1) would move the cursor or start an escape
    sequence, so it shows as one space."""
    return blanked(context)


def _fit(line: str, start: int, width: int, ascii_only: bool) -> int:
    """The end of the longest run of `line` from `start` that fits `width` cells (at least one char)."""
    if ascii_only:
        return min(len(line), start + width)
    cells, end = 0, start
    while end < len(line):
        cells += get_character_cell_size(line[end])
        if cells > width:
            break
        end += 1
    return max(end, start + 1)


def wrap_starts(text: str, width: int) -> list[int]:
    """Start offsets of the lines `text` shows as, word-wrapped to `width` cells: every newline
    starts a line, and a line too long breaks after its last space that fits (or mid-word)."""
    width = max(width, 1)
    starts, base = [], 0
    for line in text.split("\n"):
        starts.append(base)
        ascii_only, start = line.isascii(), 0
        while True:
            end = _fit(line, start, width, ascii_only)
            if end >= len(line):
                break
            # A space right after the fitting run may end the line too: trailing blanks are cropped.
            space = line.rfind(" ", start, end + 1)
            start = space + 1 if space > start else end
            starts.append(base + start)
        base += len(line) + 1
    return starts


def line_text(text: str, starts: list[int], index: int, highlights: list[tuple[int, int, str]]) -> Text:
    """Wrapped line `index` of `text`, with the (start, end, style) highlights that touch it."""
    start = starts[index]
    end = starts[index + 1] if index + 1 < len(starts) else len(text)
    line = Text(text[start:end].rstrip("\n"), end="")
    for span_start, span_end, style in highlights:
        if span_start < end and span_end > start:
            line.stylize(style, max(span_start, start) - start, min(span_end, end) - start)
    return line


def kept_map_rows(kept_map: list[list[float]], max_rows: int = 8) -> list[tuple[str, list[float]]]:
    """(label, shares per position range) rows: one per layer, or the mean of consecutive layers
    when there are more layers than `max_rows`."""
    group = max(1, math.ceil(len(kept_map) / max_rows))
    rows = []
    for first in range(0, len(kept_map), group):
        layers = kept_map[first : first + group]
        label = f"L{first}" if len(layers) == 1 else f"L{first}-{first + len(layers) - 1}"
        rows.append((label, [mean(column) for column in zip(*layers)]))
    return rows


def shade(share: float) -> str:
    """One cell for a share in [0, 1]: blank when nothing is kept, a full block when all is."""
    return SHADES[math.ceil(min(max(share, 0.0), 1.0) * (len(SHADES) - 1))]


def _colour(share: float) -> str:
    return "green" if share >= 0.9 else "yellow" if share >= 0.4 else "red"


def kept_map_lines(kept_map: list[list[float]], max_rows: int = 8) -> list[str]:
    """The kept map as plain text: a label, one shade per position range, the row's mean share."""
    return [f"{label:>7} {''.join(shade(v) for v in shares)} {mean(shares):4.0%}" for label, shares in kept_map_rows(kept_map, max_rows)]


def kept_map_text(kept_map: list[list[float]], max_rows: int = 8) -> Text:
    """`kept_map_lines`, coloured by share (red: mostly dropped, green: mostly kept), with an axis."""
    text = Text()
    for label, shares in kept_map_rows(kept_map, max_rows):
        text.append(f"{label:>7} ", style="dim")
        for share in shares:
            text.append(shade(share), style=_colour(share))
        text.append(f" {mean(shares):4.0%}\n")
    width = len(kept_map[0]) if kept_map else 0
    text.append(f"{'':>7} {'start of sequence':<{max(width - 3, 0)}}end", style="dim")
    return text
