"""Data and model output reach the terminal as inert text: no control sequence, no Rich markup.

A row (or a model's answer, or a run file) can hold ESC sequences that write the clipboard (OSC 52),
retitle the window (OSC 0), clear the screen (CSI 2J) or plant a hyperlink (OSC 8), and `[/x]`,
which Rich reads as a closing tag and fails on. Each place that shows such text is checked here:
`data show`, the bench's progress display (Rich and plain) and the run viewer.
"""

from __future__ import annotations

import asyncio
import io
import json
import os
import subprocess
import sys
from pathlib import Path

from rich.console import Console
from rich.text import Text

from bench.display import PlainDisplay, RichDisplay
from runtime.terminal_text import blanked, clean, inert, one_line
from tests.conftest import REPO

CLIPBOARD = "\x1b]52;c;ZXZpbA==\x07"  # OSC 52: sets the clipboard to "evil"
TITLE = "\x1b]0;PWNED\x07"
CLEAR = "\x1b[2J"
LINK = "\x1b]8;;http://evil.example\x07click\x1b]8;;\x07"
C1_CSI = "\x9b2J"  # the 8-bit CSI
HOSTILE = f"a{CLIPBOARD}b{TITLE}c{CLEAR}d{LINK}e{C1_CSI}f\rg\x08h\x7f"
RAW_SEQUENCES = ("\x1b]52", "\x1b]0;", "\x1b[2J", "\x1b]8;;http", "\x9b", "\r", "\x08", "\x7f")


def _no_raw_sequence(text: str, allowed: tuple[str, ...] = ()) -> None:
    for seq in set(RAW_SEQUENCES) - set(allowed):
        assert seq not in text, f"{seq!r} reached the terminal"


# --- the helper ----------------------------------------------------------------------------------

def test_clean_spells_out_every_control_but_newline_and_tab():
    cleaned = clean(HOSTILE + "\n\tx")
    _no_raw_sequence(cleaned)
    assert "\x1b" not in cleaned and "\x07" not in cleaned
    assert cleaned.startswith("a\\x1b]52;c;ZXZpbA==\\x07b\\x1b]0;PWNED\\x07c\\x1b[2Jd")
    assert "\\x9b2J" in cleaned and "f\\x0dg\\x08h\\x7f" in cleaned
    assert cleaned.endswith("\n\tx")
    assert all(ch in "\n\t" or (0x20 <= ord(ch) < 0x7F) or ord(ch) >= 0xA0 for ch in cleaned)
    assert clean("plain text, 中文 ✓") == "plain text, 中文 ✓"
    assert one_line("id\nwith\ttab\x1b") == "id\\nwith\\ttab\\x1b"


def test_inert_is_never_read_as_markup():
    text = inert("[bold]x[/bold] [/x] [link=http://evil]y[/link]" + CLEAR)
    assert isinstance(text, Text) and not text.spans
    assert text.plain == "[bold]x[/bold] [/x] [link=http://evil]y[/link]\\x1b[2J"
    buf = io.StringIO()
    Console(file=buf, force_terminal=True, color_system="truecolor", width=200).print(text)
    assert "[/x]" in buf.getvalue() and "[bold]x[/bold]" in buf.getvalue() and "\x1b]8;" not in buf.getvalue()


def test_blanked_keeps_offsets():
    assert blanked(HOSTILE) == HOSTILE.translate({c: " " for c in [*range(32), 127, *range(0x80, 0xA0)]})
    assert len(blanked(HOSTILE)) == len(HOSTILE) and "\x1b" not in blanked(HOSTILE)
    assert blanked("a\nb\tc") == "a\nb c" and blanked("a\tb", keep_tabs=True) == "a\tb"


# --- the bench's progress display ----------------------------------------------------------------

def test_rich_display_shows_markup_and_escapes_in_labels_as_text():
    buf = io.StringIO()
    display = RichDisplay(console=Console(file=buf, force_terminal=True, color_system="truecolor", width=300))
    display.start(2, "full: kv")
    display.message(f"skipped row 3 (id [/x]{TITLE}): bad")
    display.session_done(f"full/kv/multi-turn/a[/x]{HOSTILE}", "scores 100")  # a MarkupError before
    display.progress.refresh()  # what the live display does a few times a second
    display.session_done("full/kv/multi-turn/[bold red]b", f"failed: {CLIPBOARD}[/y]")
    display.close()
    out = buf.getvalue()
    _no_raw_sequence(out, allowed=("\r",))  # Rich's progress bar redraws its line with "\r"
    assert "id [/x]\\x1b]0;PWNED\\x07" in out and "a[/x]a\\x1b]52;c;ZXZpbA==\\x07b" in out
    assert "[bold red]b failed: \\x1b]52;c;ZXZpbA==\\x07[/y]" in out


def test_plain_display_spells_out_controls():
    buf = io.StringIO()
    display = PlainDisplay(stream=buf)
    display.start(1, f"full{TITLE}: kv")
    display.message(f"skipped row 1 (id {CLEAR}): bad")
    display.session_done(f"full/kv/multi-turn/x\n{HOSTILE}", "scores 0")
    out = buf.getvalue()
    _no_raw_sequence(out)
    assert "full\\x1b]0;PWNED\\x07: kv: 1 sessions" in out and "(id \\x1b[2J)" in out
    assert "[1/1] full/kv/multi-turn/x\\na\\x1b]52" in out  # one line per session


# --- `data show` ---------------------------------------------------------------------------------

def _kv_row(**changes) -> dict:
    row = json.loads((REPO / "data" / "fixtures" / "scbench_kv.jsonl").read_text().splitlines()[0])
    return {**row, **changes}


def _show(path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TERM": "xterm-256color"}
    env.pop("SCBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "cli.py", "data", "show", "kv", "--data", str(path), *args],
                          cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def test_data_show_prints_a_hostile_row_as_inert_text(tmp_path):
    row = _kv_row(id=f"x{TITLE}", context=f"ctx{CLIPBOARD} more")
    row["multi_turns"] = [{"input": f"Q{CLEAR}{LINK} [bold]b[/bold]", "answer": f"G{TITLE}"}]
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(row) + "\n")
    done = _show(path)
    assert done.returncode == 0, done.stderr
    _no_raw_sequence(done.stdout)
    assert "\x1b" not in done.stdout  # nothing styled either: stdout is not a terminal
    assert "id=x\\x1b]0;PWNED\\x07" in done.stdout and "ctx\\x1b]52;c;ZXZpbA==\\x07 more" in done.stdout
    assert "Q\\x1b[2J\\x1b]8;;http://evil.example\\x07click\\x1b]8;;\\x07 [bold]b[/bold]" in done.stdout


def test_data_show_row_id_with_a_closing_tag(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_text(json.dumps(_kv_row(id="a[/x]")) + "\n")
    done = _show(path, "--context-chars", "20")
    assert done.returncode == 0, done.stderr  # was a MarkupError traceback, exit 1
    assert "id=a[/x]" in done.stdout and "turn 1" in done.stdout


# --- the run viewer ------------------------------------------------------------------------------

def test_viewer_shows_hostile_records_as_inert_text(tmp_path):
    from tests.test_tui import shown, write_sweep
    from tui.app import ContextView, ViewerApp
    from tui.session import Navigator, load_sessions

    sweep = write_sweep(tmp_path, methods=("full",))
    samples = sweep / "full" / "samples.jsonl"
    records = [json.loads(line) for line in samples.read_text().splitlines()]
    for rec in records:
        if rec["sample_id"] == "kv-0":
            rec.update(sample_id=f"kv-0[/x]{TITLE}", question=f"Q{CLEAR} [bold]b[/bold]",
                       prediction=f"P{CLIPBOARD}[/p]", gold=f"G{LINK}")
    samples.write_text("".join(json.dumps(r) + "\n" for r in records))
    contexts = sweep / "full" / "contexts" / "kv.jsonl"
    rows = [json.loads(line) for line in contexts.read_text().splitlines()]
    rows[0]["id"] = f"kv-0[/x]{TITLE}"
    rows[0]["context"] = f"ctx\x9b2J{CLIPBOARD} " + rows[0]["context"]
    contexts.write_text("".join(json.dumps(r) + "\n" for r in rows))
    app = ViewerApp(Navigator(load_sessions(sweep)))

    async def drive():
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            header, question, answer = shown(app, "#header"), shown(app, "#question"), shown(app, "#answer")
            view = app.query_one(ContextView)
            for text in (header, question, answer, view.visible_text(), str(view.border_title)):
                _no_raw_sequence(text)
                assert "\x1b" not in text and "\x07" not in text
            assert "sample kv-0[/x]\\x1b]0;PWNED\\x07 |" in header
            assert "Q\\x1b[2J [bold]b[/bold]" in question
            assert "prediction: P\\x1b]52;c;ZXZpbA==\\x07[/p]" in answer and "gold:       G\\x1b]8;;http" in answer
            assert "kv-0[/x]" in app.query_one(ContextView)._border_title.plain
            assert view.visible_text().startswith("ctx 2J ]52;c;ZXZpbA==  JSON data:")  # one space each: offsets hold
            await pilot.press("q")

    asyncio.run(drive())


def test_comparison_table_shows_folder_names_and_labels_as_text():
    from results.tables import compare_table

    rows = [{"method": "snap[/x]", "mode": "multi-turn", "task": "kv", "a": 0.5, "b": 0.25, "delta": -0.25}]
    table = compare_table(rows, f"runs/[bold]{CLEAR}a", "runs/[/x]b", "official")
    out = io.StringIO()
    Console(file=out, width=200, color_system=None).print(table)
    text = out.getvalue()
    assert "runs/[bold]\\x1b[2Ja" in text and "runs/[/x]b" in text and "snap[/x]" in text and "-25.0" in text
    _no_raw_sequence(text)


def test_one_line_errors_spell_out_controls(capsys):
    import typer

    from commands.common import one_line_errors
    from errors import UsageError

    try:
        with one_line_errors():
            raise UsageError(f"no such folder: x{TITLE}y")
    except typer.Exit as exit_:
        assert exit_.exit_code == 2
    err = capsys.readouterr().err
    assert err == "error: no such folder: x\\x1b]0;PWNED\\x07y\n"
    _no_raw_sequence(err)
