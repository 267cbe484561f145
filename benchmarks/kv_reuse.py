"""What RadixAttention's KV reuse saves on a shared-context session: same work with and without it.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.kv_reuse [--context-tokens 4000 --turns 5]

One run starts two managed servers on the embedded model, one after the other: (a) SGLang as it
ships (RadixAttention on) and (b) the same server with `--disable-radix-cache`. On each it runs one
Retr.KV session over the same ~4K-token context in both shared-context modes (multi-turn: 5 turns;
multi-request: 5 questions), through the project's frontend programs, greedy.

Equal decode work. Decoding is about half of a session on CPU, and two servers' greedy answers are
not bit-identical (cached KV vs a fresh prefill, batched differently), so with each answer's own
length one server can decode far more tokens than the other and the ratio moves between reruns.
By default every answer therefore decodes exactly as many tokens as the session's longest gold
answer (`--decode-tokens gold`; EOS and stop strings ignored), on both servers; an integer fixes
another length; `task` keeps the task's own budget (SCBench's kv: up to 150 tokens, stops at EOS),
as a real session runs, and prints both sides' decoded tokens. It measures

- the wall time of each session (cache flushed before it);
- the prefill tokens the server actually computed: the sum over every /generate request the
  frontend sent (the context commit included) of prompt_tokens - cached_tokens (recorded from the
  responses); with the radix cache off, cached_tokens is 0;
- the expected prefill of "one context prefill plus the questions", computed from the prompts'
  token counts under the model's tokenizer (multi-turn: turn 1's prompt plus each later turn's new
  text; multi-request: the committed context plus each request's question part);
- the prefill-only time: the same requests replayed with max_new_tokens=0 on the same server, in the
  same order and concurrency, after a flush. Its share of the session time shows how much of the
  session the KV reuse can speed up at all (the rest is decoding, which reuse does not change).

`--backends native,kvm` repeats the pair on the project's `kvm` attention backend running `full`
(exact attention, no KV method). The difference matters on CPU: SGLang's own CPU attention
(`torch_native`, what `full` runs on) computes an extend's attention for every row of the sequence,
cached prefix included, and keeps only the new rows, so a request over a cached 4K-token context
still pays a 4K x 4K causal attention in every layer; `kvm` attends only the new rows.

Targets: (b)/(a) wall time >= 3x at 4K; (a)'s computed prefill tokens within 5% of the expected.
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from benchmarks.measure import (
    computed_prefill, expected_prefill, fmt_pct, fmt_ratio, load_note, load_text, ratio, table, target_line, within,
    write_json,
)
from benchmarks.options import EMBEDDED, MODES, choice_list, default_out
from benchmarks.recording import Recorder, fixed_decode, waves
from benchmarks.serving import flush_cache, prefill_only, replay, warm_up

NAME = "kv_reuse"
TARGET_WALL_RATIO = 3.0
TARGET_PREFILL_TOLERANCE = 0.05
CONFIGS = (("radix", ()), ("no-radix", ("--disable-radix-cache",)))
BACKENDS = ("native", "kvm")
GOLD, TASK = "gold", "task"
MAX_DECODE_TOKENS = 4096


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--context-tokens", type=int, default=4000, help="shared context size (model tokens)")
    parser.add_argument("--turns", type=int, default=5, help="turns (multi-turn) / questions (multi-request)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--modes", default=",".join(MODES), help="comma-separated shared-context modes")
    parser.add_argument("--backends", default="native",
                        help="native (SGLang's torch_native, as `full` runs), kvm (the project's backend running "
                             "`full`), or both: native,kvm")
    parser.add_argument("--decode-tokens", type=decode_tokens_arg, default=GOLD,
                        help="tokens every answer decodes on both servers, EOS ignored: 'gold' (the session's "
                             "longest gold answer, default), an integer, or 'task' (the kv task's own budget, "
                             "150, stopping at EOS: unequal decode work)")
    parser.add_argument("--out", type=Path, default=default_out(NAME))
    return parser.parse_args(argv)


def decode_tokens_arg(value: str) -> str | int:
    """--decode-tokens: 'gold', 'task' or a positive integer."""
    if value in (GOLD, TASK):
        return value
    try:
        tokens = int(value)
    except ValueError:
        tokens = 0
    if not 1 <= tokens <= MAX_DECODE_TOKENS:
        raise argparse.ArgumentTypeError(f"expected gold, task or an integer 1..{MAX_DECODE_TOKENS}, got {value!r}")
    return tokens


def decode_length(choice: str | int, tokenizer, sample) -> int | None:
    """Tokens each answer decodes (None: the task's own budget, stopping at EOS)."""
    if choice == TASK:
        return None
    if choice == GOLD:
        return max(len(tokenizer.encode(str(t.answer), add_special_tokens=False)) for t in sample.turns)
    return int(choice)


def prompt_token_counts(tokenizer, mode: str, calls) -> tuple[list[int], int | None]:
    """Token counts of the generating requests' prompts and, in multi-request, of the committed
    context (the first request that decodes nothing)."""
    count = lambda text: len(tokenizer.encode(text))  # noqa: E731  (as the server tokenizes)
    gens = [c for c in calls if (c.payload or {}).get("sampling_params", {}).get("max_new_tokens", 1) != 0]
    commits = [c for c in calls if c not in gens]
    prompts = [count(c.payload["text"]) for c in gens]
    context = count(commits[0].payload["text"]) if (mode == "multi-request" and commits) else None
    return prompts, context


def run_mode(conn, url: str, task, sample, mode: str, decode_tokens: int | None) -> dict:
    """One session through the frontend program, recorded, then replayed prefill-only.
    `decode_tokens`: every answer decodes exactly this many tokens (None: the task's own budget)."""
    from programs.base import PROGRAMS

    program = PROGRAMS[mode].bind(task=task)
    flush_cache(url)
    with Recorder(rewrite=None if decode_tokens is None else fixed_decode(decode_tokens)) as recorder:
        started = time.monotonic()
        state = program.run(backend=conn.backend, sample=sample, chat=conn.chat)
        wall = time.monotonic() - started
    failure = state.error() if hasattr(state, "error") else None
    if failure is not None:
        raise RuntimeError(f"{mode} session failed: {failure}")
    calls = recorder.generate_calls()
    turns = state.ret_value
    prompts, context = prompt_token_counts(conn.tokenizer, mode, calls)
    server_prompts = [c.meta.get("prompt_tokens") for c in calls
                      if c.payload["sampling_params"].get("max_new_tokens", 1) != 0]
    # The same requests without decoding, same order and concurrency, on a flushed cache.
    flush_cache(url)
    groups = [[prefill_only(c.payload) for c in wave] for wave in waves(calls)]
    prefill_wall, prefill_responses = replay(url, groups)
    return {
        "mode": mode,
        "wall_s": wall,
        "requests": len(calls),
        "waves": [len(w) for w in waves(calls)],
        "computed_prefill_tokens": computed_prefill(c.meta for c in calls),
        "expected_prefill_tokens": expected_prefill(mode, prompts, context),
        "tokenizer_prompt_tokens": prompts,
        "server_prompt_tokens": server_prompts,
        "token_counts_match": prompts == server_prompts,
        "completion_tokens": sum(int(c.meta.get("completion_tokens") or 0) for c in calls),
        "prefill_only_wall_s": prefill_wall,
        "prefill_only_computed_tokens": computed_prefill(r["meta_info"] for r in prefill_responses),
        "prefill_share": prefill_wall / wall if wall else None,
        "per_request": [
            {"prompt_tokens": c.meta.get("prompt_tokens"), "cached_tokens": c.meta.get("cached_tokens"),
             "completion_tokens": c.meta.get("completion_tokens"), "latency_s": c.meta.get("e2e_latency"),
             "max_new_tokens": c.payload["sampling_params"].get("max_new_tokens")}
            for c in calls
        ],
        "predictions": [t["prediction"] for t in turns],
    }


@dataclass
class Measured:
    """Every session of the run: results[backend][server][mode], and what surrounds them."""

    results: dict[str, dict[str, dict[str, dict]]] = field(default_factory=dict)
    servers: dict[str, dict] = field(default_factory=dict)
    context_tokens: int = 0
    decode_tokens: int | None = None
    load_before: dict[str, Any] = field(default_factory=dict)
    load_after: dict[str, Any] = field(default_factory=dict)
    started: float = 0.0


def measure(args: argparse.Namespace, task, session: tuple, modes: tuple[str, ...], backends: tuple[str, ...]) -> Measured:
    """Each backend with and without the radix cache, one server each, the same session on all
    (`session`: what `session_that_fits` returns)."""
    from kvmethods import get_method
    from runtime.backend import connect
    from runtime.method_server import serve_method

    sample, context_tokens, decode_tokens = session
    run = Measured(load_before=load_note(), started=time.monotonic(), context_tokens=context_tokens,
                   decode_tokens=decode_tokens)
    for backend in backends:
        run.results[backend] = {}
        for label, extra in CONFIGS:
            with serve_method(get_method("full"), log_path=args.out / f"server-{backend}-{label}.log",
                              extra_args=extra, kvm_always=backend == "kvm") as server:
                run.servers[f"{backend}/{label}"] = {"command": server.command, "startup_s": round(server.startup_seconds, 1)}
                conn = connect(server.url)
                warm_up(server.url)
                run.results[backend][label] = {}
                for mode in modes:
                    r = run.results[backend][label][mode] = run_mode(conn, server.url, task, sample, mode, run.decode_tokens)
                    r["loadavg_1m_after"] = load_note()["loadavg_1m"]
                    print(f"  {backend:>6} {label:>8} {mode:<13} {r['wall_s']:7.1f} s  prefill "
                          f"{r['computed_prefill_tokens']} tok, prefill-only {r['prefill_only_wall_s']:.1f} s "
                          f"(load {r['loadavg_1m_after']:.2f})", flush=True)
    run.load_after = load_note()
    return run


def print_sessions(args, task, modes, backends, run: Measured) -> None:
    decode = (f"up to {task.max_new_tokens} new tokens per answer, stopping at EOS" if run.decode_tokens is None
              else f"exactly {run.decode_tokens} new tokens per answer on both servers (EOS ignored)")
    print(f"\nRetr.KV, one session per mode: {run.context_tokens}-token context, {args.turns} turns/questions, "
          f"{decode}, greedy; embedded {EMBEDDED}")
    rows = []
    for backend in backends:
        for label, _ in CONFIGS:
            for mode in modes:
                r = run.results[backend][label][mode]
                rows.append((backend, mode, label, f"{r['wall_s']:.1f}", r["computed_prefill_tokens"],
                             r["expected_prefill_tokens"],
                             fmt_ratio(ratio(r["computed_prefill_tokens"], r["expected_prefill_tokens"]), 3),
                             r["completion_tokens"], f"{r['prefill_only_wall_s']:.1f}", fmt_pct(r["prefill_share"])))
    print(table(["backend", "mode", "server", "wall s", "prefill computed", "expected", "vs expected",
                 "completion tok", "prefill-only s", "prefill share"], rows, "<<<>>>>>>>"))
    first = run.results[backends[0]]["radix"]
    print("requests per session: " + ", ".join(
        f"{m} {first[m]['requests']} ({sum(1 for q in first[m]['per_request'] if q['max_new_tokens'] == 0)} commit "
        "the context without decoding)" for m in modes))
    print("prefill computed: sum over all /generate requests of prompt_tokens - cached_tokens; expected: one context "
          "prefill plus the questions (tokenizer counts); prefill-only s: the same requests with max_new_tokens=0, "
          "same order and concurrency; prefill share: prefill-only s / wall s")


def print_ratios(modes, backends, run: Measured) -> dict[str, dict]:
    """no-radix / radix per backend and mode; returns the wall ratios and the prefill checks."""
    rows, wall_ratios, prefill_ok = [], {}, {}
    for backend in backends:
        a, b = run.results[backend]["radix"], run.results[backend]["no-radix"]
        for mode in modes:
            key = f"{backend}/{mode}"
            wall_ratios[key] = ratio(b[mode]["wall_s"], a[mode]["wall_s"])
            prefill_ok[key] = within(a[mode]["computed_prefill_tokens"], a[mode]["expected_prefill_tokens"],
                                     TARGET_PREFILL_TOLERANCE)
            rows.append((backend, mode, fmt_ratio(wall_ratios[key]),
                         fmt_ratio(ratio(b[mode]["computed_prefill_tokens"], a[mode]["computed_prefill_tokens"])),
                         fmt_ratio(ratio(b[mode]["prefill_only_wall_s"], a[mode]["prefill_only_wall_s"])),
                         "yes" if a[mode]["token_counts_match"] and b[mode]["token_counts_match"] else "NO"))
    print("\nno-radix / radix, side by side in this run")
    print(table(["backend", "mode", "wall time", "prefill tokens", "prefill-only time", "tokenizer = server counts"],
                rows, "<<>>>>"))
    return {"wall_ratio": wall_ratios, "prefill_within_tolerance": prefill_ok}


def print_targets(task, modes, backends, run: Measured, ratios: dict[str, dict]) -> dict[str, bool]:
    wall_ratios, prefill_ok = ratios["wall_ratio"], ratios["prefill_within_tolerance"]
    results = run.results
    wall_met = all(x is not None and x >= TARGET_WALL_RATIO for x in wall_ratios.values())
    print()
    print(target_line(f"RadixAttention >= {TARGET_WALL_RATIO:.0f}x less wall time at {run.context_tokens} tokens",
                      ", ".join(f"{k} {fmt_ratio(x)}" for k, x in wall_ratios.items()), wall_met))
    print(target_line(f"computed prefill within {TARGET_PREFILL_TOLERANCE:.0%} of one context prefill + the questions",
                      ", ".join(f"{b}/{m} {results[b]['radix'][m]['computed_prefill_tokens']} vs "
                                f"{results[b]['radix'][m]['expected_prefill_tokens']} ("
                                + fmt_pct(ratio(results[b]['radix'][m]['computed_prefill_tokens'],
                                                results[b]['radix'][m]['expected_prefill_tokens']) - 1, 2) + ")"
                                for b in backends for m in modes), all(prefill_ok.values())))
    for backend in backends:
        print_why_missed(task, modes, backend, run, wall_ratios)
    decoded = {f"{b}/{m}": (results[b]["radix"][m]["completion_tokens"], results[b]["no-radix"][m]["completion_tokens"])
               for b in backends for m in modes}
    equal = all(a == b for a, b in decoded.values())
    print(target_line("equal decode work on both servers (decoded tokens radix vs no-radix)",
                      ", ".join(f"{k} {a} vs {b}" for k, (a, b) in decoded.items()), equal))
    if not equal and run.decode_tokens is None:
        print("With the task's own budget the answers decide the decode length: greedy answers are not bit-identical "
              "when the KV comes from the cache or from a fresh prefill, so the wall ratio mixes reuse with "
              "decode length. Run with --decode-tokens gold (the default) to compare like with like.")
    return {"wall_met": wall_met, "prefill_met": all(prefill_ok.values()), "equal_decode": equal}


def decode_words(task, decode_tokens: int | None) -> str:
    return f"up to {task.max_new_tokens} tokens" if decode_tokens is None else f"{decode_tokens} tokens"


def print_why_missed(task, modes, backend: str, run: Measured, wall_ratios: dict) -> None:
    """Why a backend's sessions gained less than the target: the share of prefill in the session."""
    missed = [m for m in modes if (wall_ratios[f"{backend}/{m}"] or 0) < TARGET_WALL_RATIO]
    if not missed:
        return
    a, b = run.results[backend]["radix"], run.results[backend]["no-radix"]
    shares = ", ".join(f"{m}: {fmt_pct(b[m]['prefill_share'])} without reuse, {fmt_pct(a[m]['prefill_share'])} "
                       f"with" for m in missed)
    gains = ", ".join(f"{m} {fmt_ratio(ratio(b[m]['prefill_only_wall_s'], a[m]['prefill_only_wall_s']))}"
                      for m in missed)
    print(f"Why ({backend}): prefill-only time is this share of the session ({shares}); the rest is decoding "
          f"({decode_words(task, run.decode_tokens)} per answer), which reuse does not shorten. Prefill-only time "
          f"itself drops {gains} with reuse" + (
              ", not more, because SGLang's torch_native extend attends over every row of the sequence "
              "(cached prefix included) and keeps only the new rows: reuse saves the prefix's projections and "
              "MLP, not its attention." if backend == "native" else "."))


def session_that_fits(args: argparse.Namespace, task) -> tuple:
    """(the benchmark's session, its context tokens, tokens each answer decodes or None), generated
    and counted with the embedded model's tokenizer (the one its servers use); exits 2 with one line
    when its last multi-turn prompt plus an answer does not fit the model's context window."""
    from benchmarks.samples import kv_samples, reconstruct_prompts
    from commands.bench_checks import local_model_limits
    from runtime.backend import load_tokenizer
    from runtime.model import resolve_model

    path = resolve_model(EMBEDDED)
    tokenizer = load_tokenizer(path)
    try:
        sample = kv_samples(tokenizer, context_tokens=args.context_tokens, turns=args.turns, seed=args.seed)[0]
    except ValueError as err:
        exit_usage(f"--context-tokens {args.context_tokens} --turns {args.turns}: {err}")
    window = local_model_limits(path).context_length
    decode = decode_length(args.decode_tokens, tokenizer, sample)
    last_prompt = reconstruct_prompts(tokenizer, task, sample, "multi-turn")["prompts"][-1]
    longest = len(tokenizer.encode(last_prompt)) + (decode or task.max_new_tokens)
    if window and longest > window:
        exit_usage(f"--context-tokens {args.context_tokens} --turns {args.turns}: the last multi-turn prompt and its "
                   f"answer take {longest} tokens, over the model's context length {window}; give a smaller size")
    return sample, len(tokenizer.encode(sample.context)), decode


def exit_usage(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    raise SystemExit(2)


def main(argv=None) -> None:
    args = parse_args(argv)
    modes = choice_list(args.modes, MODES, "--modes")
    backends = choice_list(args.backends, BACKENDS, "--backends")
    from programs import get_task
    from runtime.versions import versions

    task = get_task("kv")
    session = session_that_fits(args, task)  # before any server starts
    args.out.mkdir(parents=True, exist_ok=True)

    run = measure(args, task, session, modes, backends)

    print_sessions(args, task, modes, backends, run)
    ratios = print_ratios(modes, backends, run)
    met = print_targets(task, modes, backends, run, ratios)
    print(f"{load_text(run.load_before)} before, {load_text(run.load_after)} after; "
          f"total {time.monotonic() - run.started:.0f} s")
    path = write_json(args.out / "result.json", {
        "benchmark": NAME, "args": {k: str(v) for k, v in vars(args).items()}, "versions": versions(),
        "context_tokens": run.context_tokens, "max_new_tokens": task.max_new_tokens,
        "decode_tokens_per_answer": run.decode_tokens, "servers": run.servers,
        "results": run.results, **ratios,
        "targets": {"wall_ratio": TARGET_WALL_RATIO, "prefill_tolerance": TARGET_PREFILL_TOLERANCE, **met},
        "load_before": run.load_before, "load_after": run.load_after,
    })
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
