"""The step-through viewer: reading runs and sweeps, navigating, needles, the kept map, the app itself."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from errors import UsageError
from tests.conftest import REPO
from tui.render import find_needles, focus_offset, gold_items, kept_map_lines, kept_map_rows, shade, wrap_starts
from tui.session import Navigator, load_sessions

KEYS = [[f"key-{s}-{t}-aaaa" for t in range(3)] for s in range(2)]
VALUES = [[f"value-{s}-{t}-bbbb" for t in range(3)] for s in range(2)]


def _context(s: int) -> str:
    filler = " ".join(f"word{i}" for i in range(400))  # long enough that the needles sit off-screen
    pairs = ", ".join(f'"{k}": "{v}"' for k, v in zip(KEYS[s], VALUES[s]))
    return f"JSON data:\n{filler}\n{{{pairs}}}\n{filler}"


def _kept_map(share: float, layers: int = 4) -> list[list[float]]:
    return [[1.0] * 8 + [share] * 48 + [1.0] * 8 for _ in range(layers)]


def write_sweep(root: Path, methods=("full", "snapkv"), old_layout: bool = False) -> Path:
    """A sweep like bench writes: one point per method, 2 kv sessions x 3 turns, contexts/ included.
    `old_layout`: one directory, every method's records in one samples.jsonl, no contexts/, in the
    format before versions were recorded (1)."""
    sweep = root / "kv-0123abcd"
    sweep.mkdir(parents=True)
    (sweep / "sweep.json").write_text(json.dumps({"points": list(methods), **({} if old_layout else {"format_version": 2})}))
    for m, method in enumerate(methods):
        point = sweep if old_layout else sweep / method
        point.mkdir(exist_ok=True)
        header = {"spec": {"tasks": ["kv"], "modes": ["multi-turn"]}}
        header |= {"methods": [{"method": x} for x in methods]} if old_layout else {
            "format_version": 2, "method": {"method": method}, "method_label": method, "budget": None}
        (point / "header.json").write_text(json.dumps(header))
        if not old_layout:
            (point / "contexts").mkdir()
            rows = [{"id": f"kv-{s}", "context": _context(s), "multi_turns": [{"input": f'Key: "{k}"\nThe value is: ', "answer": v} for k, v in zip(KEYS[s], VALUES[s])]} for s in range(2)]
            (point / "contexts" / "kv.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        with (point / "samples.jsonl").open("a") as fh:
            for s in (1, 0):  # finished out of order, as parallel sessions do
                for t in range(3):
                    right = (s + t + m) % 2 == 0
                    fh.write(json.dumps({
                        "task": "kv", "mode": "multi-turn", "sample_id": f"kv-{s}", "sample_index": s, "turn": t,
                        "question": f'Key: "{KEYS[s][t]}"\nThe value is: ', "gold": VALUES[s][t],
                        "prediction": VALUES[s][t] if right else f"wrong-{method}-{s}-{t}",
                        "score": float(right), "score_fixed": float(right), "prompt_tokens": 900 + t * 20,
                        "cached_tokens": 0 if t == 0 else 880 + t * 10, "new_prefill_tokens": 900 if t == 0 else 20,
                        "completion_tokens": 12, "latency": 0.5 + t, "kept_kv": None if method == "full" else 0.25,
                        "kept_map": None if method == "full" else _kept_map(0.1), "context_tokens": 800,
                        "turn_extras": {}, "sample_meta": {}, "method": method, "budget": None, "session_turns": 3,
                        **({} if old_layout else {"format_version": 2, "point": method, "category": "String Retrieval",
                                                  "method_settings": {"method": method}}),
                    }) + "\n")
    return sweep


# --- reading runs and sweeps ---------------------------------------------------------------------

def test_sweep_reads_sessions_in_method_task_mode_sample_order(tmp_path):
    sessions = load_sessions(write_sweep(tmp_path))
    assert [(s.method, s.sample_id) for s in sessions] == [("full", "kv-0"), ("full", "kv-1"), ("snapkv", "kv-0"), ("snapkv", "kv-1")]
    first = sessions[0]
    assert [t.turn for t in first.turns] == [0, 1, 2]
    assert first.turns[1].question.startswith(f'Key: "{KEYS[0][1]}"') and first.turns[1].gold == VALUES[0][1]
    assert first.turns[1].cached_tokens == 890 and first.turns[1].new_prefill_tokens == 20
    assert first.context == _context(0) and sessions[3].context == _context(1)
    assert sessions[2].turns[0].kept_kv == 0.25 and len(sessions[2].turns[0].kept_map) == 4


def test_sweep_order_follows_sweep_json(tmp_path):
    sessions = load_sessions(write_sweep(tmp_path, methods=("snapkv", "full")))
    assert [s.method for s in sessions] == ["snapkv", "snapkv", "full", "full"]


def test_a_point_directory_is_a_run(tmp_path):
    sessions = load_sessions(write_sweep(tmp_path) / "snapkv")
    assert {s.method for s in sessions} == {"snapkv"} and len(sessions) == 2


def test_older_run_without_contexts_still_steps_through_turns(tmp_path):
    sessions = load_sessions(write_sweep(tmp_path, old_layout=True))
    assert [s.method for s in sessions] == ["full", "full", "snapkv", "snapkv"]
    assert all(s.context is None and len(s.turns) == 3 for s in sessions)


def test_failed_session_has_its_error_and_no_turns(tmp_path):
    point = write_sweep(tmp_path) / "full"
    with (point / "samples.jsonl").open("a") as fh:
        fh.write(json.dumps({"task": "kv", "mode": "multi-request", "sample_id": "kv-0", "sample_index": 0, "error": "RuntimeError: boom",
                             "point": "full", "method": "full", "method_settings": {"method": "full"}, "budget": None,
                             "category": "String Retrieval", "format_version": 2}) + "\n")
    failed = [s for s in load_sessions(point) if s.mode == "multi-request"]
    assert len(failed) == 1 and failed[0].error == "RuntimeError: boom" and failed[0].turns == []


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such file or folder"),
    (lambda p: p, "is not a run directory: no samples.jsonl in it or its subfolders"),
])
def test_bad_paths_are_usage_errors(tmp_path, make, message):
    with pytest.raises(UsageError, match=message):
        load_sessions(make(tmp_path))


# --- navigating ----------------------------------------------------------------------------------

def test_turns_and_sessions_stop_at_the_ends(tmp_path):
    nav = Navigator(load_sessions(write_sweep(tmp_path)))
    nav.prev_turn()
    assert (nav.index, nav.turn_index) == (0, 0)
    for _ in range(5):
        nav.next_turn()
    assert nav.turn.question.startswith(f'Key: "{KEYS[0][2]}"') and nav.position() == "session 1/4, turn 3/3"
    nav.next_session()
    assert (nav.session.sample_id, nav.turn_index) == ("kv-1", 0)
    for _ in range(5):
        nav.next_session()
    assert nav.index == 3
    nav.prev_session()
    assert (nav.session.method, nav.session.sample_id) == ("snapkv", "kv-0")


def test_switch_method_keeps_the_sample_and_turn(tmp_path):
    nav = Navigator(load_sessions(write_sweep(tmp_path)))
    nav.next_session()
    nav.next_turn()
    nav.switch_method()
    assert (nav.session.method, nav.session.sample_id, nav.turn_index) == ("snapkv", "kv-1", 1)
    nav.switch_method()  # cycles back
    assert (nav.session.method, nav.session.sample_id, nav.turn_index) == ("full", "kv-1", 1)
    nav.switch_method(-1)
    assert nav.session.method == "snapkv"


def test_switch_method_without_the_same_sample_goes_to_the_same_task_and_mode(tmp_path):
    sweep = write_sweep(tmp_path)
    path = sweep / "snapkv" / "samples.jsonl"
    path.write_text("".join(line for line in path.read_text().splitlines(keepends=True) if '"kv-1"' not in line))
    nav = Navigator(load_sessions(sweep))
    nav.next_session()
    nav.next_turn()
    nav.switch_method()
    assert (nav.session.method, nav.session.sample_id, nav.turn_index) == ("snapkv", "kv-0", 0)


def test_start_at_filters_and_explains_a_miss(tmp_path):
    nav = Navigator(load_sessions(write_sweep(tmp_path, methods=("full", "snapkv-b512"))))
    nav.start_at(task="scbench_kv", mode="multi-turn", method="snapkv")
    assert nav.session.method == "snapkv-b512" and nav.index == 2
    with pytest.raises(UsageError, match=r"^no session matches --task vt \(this run has task: kv; mode: multi-turn; method: full, snapkv-b512\)$"):
        nav.start_at(task="vt")


# --- needles, wrapping, kept map -----------------------------------------------------------------

def test_needles_find_the_quoted_key_and_the_gold_answer():
    context = _context(0)
    needles = find_needles(context, f'Key: "{KEYS[0][1]}"\nThe value is: ', VALUES[0][1])
    key, gold = needles
    assert (key.kind, key.text, gold.kind, gold.text) == ("key", KEYS[0][1], "gold", VALUES[0][1])
    assert [context[a:b] for a, b in key.spans] == [KEYS[0][1]] and [context[a:b] for a, b in gold.spans] == [VALUES[0][1]]
    assert focus_offset(needles) == key.spans[0][0]
    assert focus_offset(find_needles(context, "no quotes here", VALUES[0][2])) == context.index(VALUES[0][2])
    assert find_needles(context, "?", "absent")[0].spans == () and focus_offset(find_needles(context, "?", "absent")) is None


def test_gold_items_split_lists_and_list_strings():
    assert gold_items(["A", " B "]) == ["A", "B"]
    assert gold_items("['VUVTY', 'NFHLV']") == ["VUVTY", "NFHLV"]
    assert gold_items("[not a list") == ["[not a list"]
    assert gold_items(42) == ["42"]


def test_wrap_starts_break_at_spaces_newlines_and_wide_characters():
    text = "aaa bbb ccc\ndddddddddd\n\n茶馆叫什么名字"
    starts = wrap_starts(text, 8)
    lines = [text[a:b].rstrip("\n") for a, b in zip(starts, starts[1:] + [len(text)])]
    assert lines == ["aaa bbb ", "ccc", "dddddddd", "dd", "", "茶馆叫什", "么名字"]


def test_kept_map_rows_shades_and_groups():
    assert shade(0.0) == " " and shade(0.01) == "▁" and shade(0.5) == "▄" and shade(1.0) == "█"
    kept = _kept_map(0.0, layers=2)
    lines = kept_map_lines(kept)
    assert lines == [f"{'L' + str(i):>7} {'█' * 8}{' ' * 48}{'█' * 8}  25%" for i in range(2)]
    rows = kept_map_rows([[0.0] * 64] * 16 + [[1.0] * 64] * 16, max_rows=8)
    assert [label for label, _ in rows] == [f"L{i}-{i + 3}" for i in range(0, 32, 4)]
    assert rows[0][1] == [0.0] * 64 and rows[-1][1] == [1.0] * 64


# --- the app, driven by Textual's pilot ----------------------------------------------------------

def shown(app, selector: str) -> str:
    from textual.widgets import Static

    content = app.query_one(selector, Static).content
    return getattr(content, "plain", str(content))


def screen_text(app) -> str:
    """The main widgets' text, as a reader sees it (also printed by `-s` for a look)."""
    from tui.app import ContextView

    parts = [shown(app, "#header"), app.query_one(ContextView).visible_text()]
    parts += [shown(app, f"#{name}") for name in ("question", "answer", "stats", "keptmap")]
    return "\n---\n".join(parts)


def test_app_steps_through_turns_sessions_and_methods(tmp_path):
    from tui.app import ContextView, ViewerApp

    app = ViewerApp(Navigator(load_sessions(write_sweep(tmp_path))))

    async def drive():
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            view = app.query_one(ContextView)
            for t in range(3):
                if t:
                    await pilot.press("n")
                await pilot.pause()
                assert f"full | kv | multi-turn | sample kv-0 | session 1/4, turn {t + 1}/3" in shown(app, "#header")
                assert KEYS[0][t] in shown(app, "#question")
                assert f"gold:       {VALUES[0][t]}" in shown(app, "#answer")
                score = "100.0" if t % 2 == 0 else "0.0"
                assert f"score {score} official, {score} fixed" in shown(app, "#stats")
                assert "key 1x, gold 1x" in shown(app, "#stats")
                assert view.scroll_offset.y > 0 and KEYS[0][t] in view.visible_text()  # scrolled to the needle
                styles = {seg.text: str(seg.style) for seg in view.render_line(view.focus_line - view.scroll_offset.y)}
                assert styles[KEYS[0][t]] == "bold black on yellow" and styles[VALUES[0][t]] == "bold black on green"
            assert "wrong-full-0-1" not in shown(app, "#answer") and "prediction: value-0-2" in shown(app, "#answer")
            assert "no kept map" in shown(app, "#keptmap")
            await pilot.press("n")  # stays on the last turn
            assert "turn 3/3" in shown(app, "#header")
            await pilot.press("p")
            assert "turn 2/3" in shown(app, "#header") and "prediction: wrong-full-0-1" in shown(app, "#answer")
            await pilot.press("N")
            await pilot.pause()
            assert "sample kv-1 | session 2/4, turn 1/3" in shown(app, "#header") and KEYS[1][0] in view.visible_text()
            await pilot.press("n", "m")
            await pilot.pause()
            assert "snapkv | kv | multi-turn | sample kv-1 | session 4/4, turn 2/3" in shown(app, "#header")
            assert "kept KV 25.0%" in shown(app, "#stats") and "prompt 920 tokens: 890 cached, 20 new prefill" in shown(app, "#stats")
            assert f"L0 {'█' * 8}{'▁' * 48}{'█' * 8}  32%" in shown(app, "#keptmap")
            print("\n" + screen_text(app))
            await pilot.press("k")
            assert "snapkv | kv | multi-turn | sample kv-0 | session 3/4, turn 1/3" in shown(app, "#header")
            await pilot.press("q")
        assert app.return_code == 0

    asyncio.run(drive())


def test_app_without_contexts_says_so(tmp_path):
    from tui.app import ContextView, ViewerApp

    app = ViewerApp(Navigator(load_sessions(write_sweep(tmp_path, old_layout=True))))

    async def drive():
        async with app.run_test(size=(160, 50)) as pilot:
            await pilot.pause()
            assert "context unavailable" in app.query_one(ContextView).visible_text()
            assert KEYS[0][0] in shown(app, "#question") and "in context" not in shown(app, "#stats")

    asyncio.run(drive())


# --- the command ---------------------------------------------------------------------------------

def cli(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("SCBENCH_DEBUG", None)
    return subprocess.run([sys.executable, "cli.py", "tui", *args], cwd=REPO, capture_output=True, text=True, timeout=120, env=env)


def test_cli_bad_path_is_one_line_exit_2(tmp_path):
    done = cli(str(tmp_path / "nope"))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: {tmp_path / 'nope'}: no such file or folder"


def test_cli_no_matching_session_is_one_line_exit_2(tmp_path):
    done = cli(str(write_sweep(tmp_path)), "--method", "quest")
    assert done.returncode == 2
    assert done.stderr.strip() == "error: no session matches --method quest (this run has task: kv; mode: multi-turn; method: full, snapkv)"
