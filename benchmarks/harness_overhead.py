"""What the bench harness costs over the raw server: the same sessions through `bench`'s session
runner and as a replay of the exact same requests with raw HTTP /generate calls.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.harness_overhead [--context-tokens 2000 --turns 4]

One managed server (the embedded model, `full`). For each mode, a first pass runs the session
through `bench.runner.run_session` (what `cli.py bench` runs per session: cache flush, the SGLang
frontend program, scoring, records) while recording every HTTP request the frontend sends: the exact
JSON payloads (text, greedy sampling parameters, max_new_tokens) and which of them were in flight
together. The prompts are also rebuilt independently from the task's templates and the model's HF
chat template, and compared with the recorded ones. Then, `--reps` times and in alternating order,
the session runs again through `run_session` and as a raw replay: cache flush, then the recorded
payloads with urllib POSTs in the same order, concurrent requests in one thread each as the
frontend's forks are. Per request the server's prompt_tokens (and the answers) of both sides are
compared.

Target: bench wall time <= 1.1x the raw replay.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from benchmarks.measure import fmt_ratio, load_note, load_text, ratio, table, target_line, write_json
from benchmarks.options import MODES, choice_list, default_out
from benchmarks.recording import Recorder, waves
from benchmarks.serving import flush_cache, replay, warm_up

NAME = "harness_overhead"
TARGET = 1.1


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context-tokens", type=int, default=2000, help="shared context size (model tokens)")
    parser.add_argument("--turns", type=int, default=4, help="turns / questions per session")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--reps", type=int, default=2, help="timed repetitions of each side (alternating order)")
    parser.add_argument("--out", type=Path, default=default_out(NAME))
    return parser.parse_args(argv)


def run_bench_session(conn, task, sample, mode, spec, count):
    """One session through the session runner; its records (a failure stops the benchmark)."""
    from bench.runner import run_session

    outcome = run_session(conn, task, sample, mode, spec, count)
    if outcome.error:
        raise RuntimeError(f"{mode}: bench session failed: {outcome.error}")
    return outcome.records


def measure_mode(conn, url: str, task, sample, mode: str, spec, count, reps: int) -> dict:
    """Records one bench session's requests, then times bench sessions against raw replays of them."""
    from benchmarks.samples import reconstruct_prompts

    # Pass 1: through the session runner, recording the requests.
    with Recorder() as recorder:
        t0 = time.monotonic()
        records = run_bench_session(conn, task, sample, mode, spec, count)
        recording_wall = time.monotonic() - t0
    calls = [c for wave in waves(recorder.generate_calls()) for c in wave]  # replay order
    groups = [[c.payload for c in wave] for wave in waves(calls)]
    # Concurrent forks start in any order: map each turn to its request by the request id.
    by_id = {c.meta.get("id"): i for i, c in enumerate(calls)}
    turn_calls = [by_id[r.request_id] for r in records]  # call index of each turn
    recorded_answers = [calls[i].payload["text"] for i in turn_calls]
    rebuilt = reconstruct_prompts(conn.tokenizer, task, sample, mode)
    rebuilt_same = rebuilt["prompts"] == recorded_answers and (
        rebuilt["context"] is None or rebuilt["context"] == calls[0].payload["text"])

    bench_walls, raw_walls, checks = [], [], []
    for rep in range(reps):
        for side in (("raw", "bench") if rep % 2 == 0 else ("bench", "raw")):
            if side == "bench":
                t0 = time.monotonic()
                bench_records = run_bench_session(conn, task, sample, mode, spec, count)
                bench_walls.append(time.monotonic() - t0)
            else:
                flush_cache(url)
                wall, responses = replay(url, groups)
                raw_walls.append(wall)
                raw_answers = [responses[i] for i in turn_calls]  # in turn order
        checks.append({
            "prompt_tokens_bench": [r.prompt_tokens for r in bench_records],
            "prompt_tokens_raw": [r["meta_info"]["prompt_tokens"] for r in raw_answers],
            "completion_tokens_bench": [r.completion_tokens for r in bench_records],
            "completion_tokens_raw": [r["meta_info"]["completion_tokens"] for r in raw_answers],
            "same_answers": [r.prediction for r in bench_records] == [r["text"] for r in raw_answers],
        })
    print(f"  {mode:<13} bench {', '.join(f'{x:.1f}' for x in bench_walls)} s, raw "
          f"{', '.join(f'{x:.1f}' for x in raw_walls)} s", flush=True)
    return {
        "recording_pass_wall_s": recording_wall,
        "bench_wall_s": bench_walls, "raw_wall_s": raw_walls,
        "bench_median_s": statistics.median(bench_walls), "raw_median_s": statistics.median(raw_walls),
        "ratio": ratio(sum(bench_walls), sum(raw_walls)),
        "requests": len(calls), "waves": [len(w) for w in groups],
        "reconstructed_prompts_equal_recorded": rebuilt_same,
        "prompt_tokens_match": all(c["prompt_tokens_bench"] == c["prompt_tokens_raw"] for c in checks),
        "completion_tokens_match": all(c["completion_tokens_bench"] == c["completion_tokens_raw"] for c in checks),
        "answers_match": all(c["same_answers"] for c in checks), "checks": checks,
        "sampling_params": [c.payload.get("sampling_params") for c in calls],
    }


def measure(args: argparse.Namespace, modes: tuple[str, ...]) -> tuple[dict[str, dict], int]:
    """Every mode on one managed server running `full`; returns (results per mode, context tokens)."""
    from bench.runner import BenchSpec
    from benchmarks.samples import kv_samples
    from data.generators import token_counter
    from kvmethods import get_method
    from programs import get_task
    from runtime.backend import connect
    from runtime.method_server import serve_method

    task = get_task("kv")
    spec = BenchSpec(tasks=("kv",), modes=modes, num_samples=1, context_tokens=args.context_tokens,
                     num_turns=args.turns, seed=args.seed, gold_likelihood=False)  # timed: no probes
    with serve_method(get_method("full"), log_path=args.out / "server.log") as server:
        conn = connect(server.url)
        count = token_counter(conn.tokenizer)
        sample = kv_samples(conn.tokenizer, context_tokens=args.context_tokens, turns=args.turns, seed=args.seed)[0]
        warm_up(server.url)
        results = {mode: measure_mode(conn, server.url, task, sample, mode, spec, count, args.reps) for mode in modes}
    return results, count(sample.context)


def print_results(args: argparse.Namespace, results: dict[str, dict], context_tokens: int) -> dict:
    """The table and the target line; returns the verdict."""
    from programs import get_task

    print(f"\nRetr.KV, 1 session per mode: {context_tokens}-token context, {args.turns} turns/questions, "
          f"greedy, max_new_tokens {get_task('kv').max_new_tokens}; {args.reps} timed repetitions per side, alternating")
    rows = [(mode, r["requests"], "+".join(str(n) for n in r["waves"]), f"{r['bench_median_s']:.2f}",
             f"{r['raw_median_s']:.2f}", fmt_ratio(r["ratio"], 3),
             "yes" if r["reconstructed_prompts_equal_recorded"] else "NO",
             "yes" if r["prompt_tokens_match"] else "NO", "yes" if r["answers_match"] else "NO")
            for mode, r in results.items()]
    print(table(["mode", "requests", "in flight", "bench s (median)", "raw s (median)", "bench/raw",
                 "rebuilt = recorded", "prompt tokens equal", "answers equal"], rows))
    print("bench: bench.runner.run_session (flush, frontend program, scoring, records); raw: flush + the recorded "
          "payloads as urllib POSTs; bench/raw: total over the repetitions; in flight: requests sent together")
    overall = ratio(sum(sum(r["bench_wall_s"]) for r in results.values()),
                    sum(sum(r["raw_wall_s"]) for r in results.values()))
    met = all(r["ratio"] is not None and r["ratio"] <= TARGET for r in results.values())
    print()
    print(target_line(f"bench wall time <= {TARGET}x the raw replay",
                      ", ".join(f"{m} {fmt_ratio(r['ratio'], 3)}" for m, r in results.items())
                      + f" (all {fmt_ratio(overall, 3)})", met))
    return {"overall_ratio": overall, "target": TARGET, "met": met}


def main(argv=None) -> None:
    args = parse_args(argv)
    modes = choice_list(args.modes, MODES, "--modes")
    from runtime.versions import versions

    args.out.mkdir(parents=True, exist_ok=True)
    load_before, started = load_note(), time.monotonic()

    results, context_tokens = measure(args, modes)

    load_after = load_note()
    verdict = print_results(args, results, context_tokens)
    print(f"{load_text(load_before)} before, {load_text(load_after)} after; total {time.monotonic() - started:.0f} s")
    path = write_json(args.out / "result.json", {
        "benchmark": NAME, "args": {k: str(v) for k, v in vars(args).items()}, "versions": versions(),
        "context_tokens": context_tokens, "results": results, **verdict,
        "load_before": load_before, "load_after": load_after,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
