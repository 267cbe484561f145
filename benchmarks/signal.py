"""What a KV method changed, per turn, at several context lengths: SCBench score, the gold answer's
likelihood through the method's KV, and agreement with full attention.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.signal [--lengths 1000 2000 4000]

For each length it runs the default bench's comparison as `cli.py bench` runs it (one subprocess
per length, so nothing differs from what a user gets): Retr.KV in both modes, full attention,
SnapKV and StreamingLLM with a budget of a quarter of the context (`--budget-share`), on the
embedded model. Each length is its own sweep directory under `--out`, so an interrupted run resumes
where it stopped. Then it prints, per length, mode, method and turn: the score (x100), gold NLL
(nats per gold token), gold acc (share of gold tokens ranked first), agreement with full attention
(exact %, word F1 %) and the kept KV, read with `results.report.build_report`.

What to look for (SCBench's finding): full attention holds on every turn; SnapKV, compressed with
turn 1's question in multi-turn, holds turn 1 and falls after; in multi-request it compresses with
the context alone and falls on every question; StreamingLLM keeps sinks and the recent window,
so it holds only keys that sit near the end. No timing is measured here.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from benchmarks.measure import load_note, load_text, table, write_json
from benchmarks.options import REPO, default_out

NAME = "signal"
METHODS = ("full", "snapkv", "streamingllm")


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 4000],
                        help="context sizes in model tokens (at most ~7,900 on the embedded model)")
    parser.add_argument("--methods", default=",".join(METHODS), help="comma-separated KV methods (full is the reference)")
    parser.add_argument("--budget-share", type=int, default=4, help="the budget is the context length / this")
    parser.add_argument("--samples", type=int, default=2, help="sessions per length and mode")
    parser.add_argument("--turns", type=int, default=3)
    parser.add_argument("--model", default=None, help="model for the managed servers (default: the embedded one)")
    parser.add_argument("--out", type=Path, default=default_out(NAME))
    args = parser.parse_args(argv)
    if any(length < 200 for length in args.lengths) or args.budget_share < 1 or args.samples < 1 or args.turns < 1:
        parser.error("--lengths >= 200, --budget-share, --samples and --turns >= 1")
    return args


def run_length(args: argparse.Namespace, length: int) -> Path:
    """Runs (or resumes) the comparison at one length; returns its sweep directory."""
    name = f"kv-{length}"
    command = [
        sys.executable, "cli.py", "bench", "--tasks", "kv", "--methods", args.methods,
        "--budgets", str(length // args.budget_share), "--context-tokens", str(length),
        "--samples", str(args.samples), "--turns", str(args.turns), "--out", str(args.out.resolve()), "--name", name,
    ]
    if args.model:
        command += ["--model", args.model]
    print(f"== {length} tokens: {' '.join(command[1:])}", flush=True)
    subprocess.run(command, cwd=REPO, check=True, stdout=subprocess.DEVNULL)
    return args.out / name


def rows_of(report: dict, length: int) -> list[list]:
    def pct(value, scale=100):
        return None if value is None else f"{scale * value:.0f}"

    return [
        [length, r["mode"], r["label"], r["turn"], pct(r["score"]),
         None if r["gold_nll"] is None else f"{r['gold_nll']:.2f}", pct(r["gold_token_acc"]),
         pct(r["agree_exact"]), pct(r["agree_f1"]), pct(r["kept_kv"])]
        for r in report["turns"]
    ]


def main(argv=None) -> None:
    from results.reader import all_records
    from results.report import build_report

    args = parse_args(argv)
    before = load_note()
    reports = {length: build_report(all_records([run_length(args, length)])) for length in args.lengths}
    after = load_note()
    headers = ["context", "mode", "method", "turn", "score", "gold NLL", "gold acc %", "agree exact %",
               "agree F1 %", "kept KV %"]
    rows = [row for length, report in reports.items() for row in rows_of(report, length)]
    print(table(headers, rows, "><<>>>>>>>"))
    print(f"{load_text(before)} before; {load_text(after)} after")
    path = write_json(args.out / "signal.json", {"lengths": args.lengths, "methods": args.methods, "rows": rows,
                                                 "headers": headers, "load": [before, after]})
    print(f"written: {path}")


if __name__ == "__main__":
    main()
