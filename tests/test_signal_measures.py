"""The signal measures in the run record's readers: agreement with full attention (`results.agreement`)
and the gold answer's likelihood, averaged by the report, the bench's summary, drawn by the plots and
shown by the step-through viewer."""

from __future__ import annotations

import pytest

from results.agreement import agree, agreements, reference_point
from results.identity import PointIdentity
from results.report import build_report
from results.summary import summarize
from tests.test_report import rec


def with_gold(record, nll, acc):
    return record.replace(gold_nll=nll, gold_token_acc=acc, gold_tokens=8)


def sweep_records():
    """full and snapkv on one kv session, two turns in each mode; snapkv agrees on turn 1 only."""
    out = []
    for mode in ("multi-turn", "multi-request"):
        out += [
            with_gold(rec("kv", 0.0, mode=mode, turn=0, prediction="The value is abc-123."), 0.2, 1.0),
            with_gold(rec("kv", 0.0, mode=mode, turn=1, prediction="The value is def-456."), 0.4, 0.75),
            with_gold(rec("kv", 0.0, method="snapkv", budget=512, mode=mode, turn=0,
                          prediction="The value is abc-123."), 0.3, 0.875),
            with_gold(rec("kv", 0.0, method="snapkv", budget=512, mode=mode, turn=1,
                          prediction="I do not know the value."), 2.9, 0.25),
        ]
    return out


def test_agree_is_exact_match_and_word_f1():
    assert agree("  The  value is X ", "The value is X") == pytest.approx(type(agree("", ""))(1.0, 1.0))
    found = agree("the value is x", "The value is Y")
    assert found.exact == 0.0 and found.f1 == pytest.approx(0.75)  # 3 of 4 words in common, lowercased
    assert agree("", "").f1 == 1.0 and agree("", "x").f1 == 0.0 and agree("a b", "c d").f1 == 0.0


def test_the_reference_is_the_full_point():
    full = PointIdentity.make("full", {"method": "full"}, None)
    other_full = PointIdentity.make("full-fp32", {"method": "full", "dtype": "fp32"}, None)
    snap = PointIdentity.make("snapkv-b512", {"method": "snapkv", "budget": 512}, 512)
    assert reference_point([snap, full, other_full]) == full  # labelled "full"
    assert reference_point([snap, other_full]) == other_full  # the one full point
    assert reference_point([snap]) is None


def test_records_agree_with_full_on_the_same_session_and_turn():
    records = sweep_records()
    found = agreements(records)
    assert [a is None for a in found[:2]] == [True, True]  # the reference's own records
    assert found[2].exact == 1.0 and found[2].f1 == 1.0
    assert found[3].exact == 0.0 and 0 < found[3].f1 < 1
    # Another session (or a failed record) has no counterpart.
    lone = rec("kv", 0.0, method="snapkv", budget=512, sample="s7", prediction="x")
    assert agreements([*records, lone])[-1] is None


def test_report_rows_carry_gold_likelihood_and_agreement():
    report = build_report(sweep_records())
    assert report["reference"] == "full"
    turns = {(r["label"], r["mode"], r["turn"]): r for r in report["turns"]}
    snap1, snap2 = turns[("snapkv-b512", "multi-turn", 1)], turns[("snapkv-b512", "multi-turn", 2)]
    assert (snap1["gold_nll"], snap1["gold_token_acc"], snap1["agree_exact"], snap1["agree_f1"]) == (0.3, 0.875, 1.0, 1.0)
    assert snap2["gold_nll"] == 2.9 and snap2["agree_exact"] == 0.0
    assert turns[("full", "multi-turn", 1)]["agree_f1"] is None
    (category,) = [r for r in report["categories"] if r["label"] == "snapkv-b512" and r["mode"] == "multi-request"]
    assert category["gold_nll"] == pytest.approx(1.6) and category["gold_token_acc"] == pytest.approx(0.5625)
    assert category["agree_exact"] == 0.5


def test_bench_summary_table_shows_the_measures():
    from rich.console import Console

    summary = summarize(sweep_records())
    (snap,) = [r for r in summary.results if r.method == "snapkv-b512" and r.mode == "multi-turn"]
    assert [t.gold_token_acc for t in snap.turns] == [0.875, 0.25] and snap.turns[0].agree_f1 == 1.0
    from results.summary import results_table

    console = Console(width=250, record=True)
    console.print(results_table(summary))
    text = console.export_text()
    assert "gold NLL" in text and "agree F1" in text and "2.90" in text and "25%" in text


def test_report_prints_the_signal_table_and_draws_the_signal_figure(tmp_path):
    from rich.console import Console

    from results.plots import write_plots
    from results.tables import print_report

    report = build_report(sweep_records())
    console = Console(width=200, record=True)
    print_report(report, console)
    text = console.export_text()
    assert "What each method changed, multi-turn (agreement with full)" in text
    paths = write_plots(report, tmp_path, lambda note: None)
    assert (tmp_path / "signal_per_turn.png") in paths
    # Without gold likelihoods and a full point there is nothing to draw, and the note says so.
    notes = []
    plain = [r.replace(gold_nll=None, gold_token_acc=None) for r in sweep_records() if r.method == "snapkv"]
    assert (tmp_path / "x" / "signal_per_turn.png") not in write_plots(build_report(plain), tmp_path / "x", notes.append)
    assert any(n.startswith("signal_per_turn.png skipped") for n in notes)


def test_viewer_shows_gold_likelihood_and_agreement(tmp_path):
    from tests.test_report import write_run
    from tui.app import stats_text
    from tui.session import load_sessions

    records = sweep_records()
    write_run(tmp_path / "full", [r for r in records if r.method == "full"])
    write_run(tmp_path / "snapkv-b512", [r for r in records if r.method == "snapkv"])
    (session,) = [s for s in load_sessions(tmp_path) if s.method == "snapkv-b512" and s.mode == "multi-turn"]
    text = stats_text(session.turns[1], [], False, session.agreement.get(1)).plain
    assert "gold answer through this KV: NLL 2.90 nats/token, 25.0% of its 8 tokens ranked first" in text
    assert "vs full attention's answer: exact no, word F1" in text
