"""Session time and server peak memory against context length, per KV method.

    OMP_NUM_THREADS=1 .venv/bin/python -m benchmarks.length_scaling [--lengths 1000 2000 4000 7900]

One run starts one managed server per method (`full`: SGLang's own attention; the others on the
project's `kvm` backend, started exactly as `cli.py bench --methods` starts them) and runs, on each,
one Retr.KV session per context length through `bench.runner.run_session` (cache flushed before
each): by default multi-request mode with 2 questions (the context is committed once, then both
questions are answered concurrently over it). While a session runs, a thread samples the summed
resident set size of every process in the server's process group (launcher, scheduler,
detokenizer) every 0.1 s; the table shows the peak per session and the server's RSS when idle after
warm-up. The budget settings (default `budget=512`) make the methods act at every length: A-shape
lets each prefill row see 128 sink + 384 local keys, SnapKV keeps 512 keys per KV head after the
context's prefill.

The largest default length, 7,900 tokens, is the most that fits the embedded model's 8,192-token
window with the question and the answer budget (150 new tokens). Times include decoding, whose
length differs between methods (a method that degrades the answer may decode longer): the table
shows the completion tokens of each session next to its time. The KV pool is allocated when a
server starts (`--max-total-tokens`, default 32768 tokens), so peak RSS mostly reflects that pool
and the activations of the largest prefill; `kvm` servers also run without chunked prefill.

Target (informational): every method finishes every length; time and memory are reported as
measured.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from benchmarks.measure import PeakRss, fmt_ratio, group_pids, load_note, load_text, ratio, table, target_line, write_json
from benchmarks.options import EMBEDDED, MODES, choice_list, default_out, resolve_method_list
from benchmarks.serving import warm_up

NAME = "length_scaling"
METHODS = ("full", "a_shape", "snapkv")
GIB = 1024**3


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 2000, 4000, 7900],
                        help="context sizes in model tokens (at most ~7,900 on the embedded model)")
    parser.add_argument("--methods", default=",".join(METHODS),
                        help="comma-separated KV methods; full@kvm runs full on the project's kvm backend")
    parser.add_argument("--method-arg", action="append", default=None,
                        help="field=value for every method that has it (repeatable; default budget=512)")
    parser.add_argument("--turns", type=int, default=2, help="questions (or turns) per session")
    parser.add_argument("--modes", default="multi-request", help="multi-request, multi-turn or both (comma-separated)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=default_out(NAME))
    parser.add_argument("--no-plot", action="store_true")
    return parser.parse_args(argv)


def plot(path: Path, results: list[dict], methods: list[str], modes: list[str]) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_t, ax_m) = plt.subplots(1, 2, figsize=(11, 4.2))
    for method in methods:
        for mode in modes:
            rows = [r for r in results if r["method"] == method and r["mode"] == mode and r.get("error") is None]
            label = {"full": "full (torch_native)", "full@kvm": "full (kvm)"}.get(method, f"{method} (kvm)")
            label = label if len(modes) == 1 else f"{label}, {mode}"
            xs = [r["context_tokens"] for r in rows]
            ax_t.plot(xs, [r["wall_s"] for r in rows], marker="o", label=label)
            ax_m.plot(xs, [r["peak_rss_bytes"] / GIB for r in rows], marker="o", label=label)
    ax_t.set(xlabel="context tokens", ylabel="session wall time (s)", title="Time per session")
    ax_m.set(xlabel="context tokens", ylabel="peak RSS of the server (GiB)", title="Server peak memory")
    for ax in (ax_t, ax_m):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(f"Retr.KV on the embedded model, {', '.join(modes)} (CPU)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def measure_method(method: str, instance, args, modes, samples, count) -> tuple[list[dict], int]:
    """Every length and mode on one server for `method`; returns (rows, the server's idle RSS)."""
    from bench.runner import BenchSpec, run_session
    from programs import get_task
    from runtime.backend import connect
    from runtime.method_server import serve_method

    task = get_task("kv")
    # No --max-seq-len cut: each point measures the context length it names.
    spec = BenchSpec(tasks=("kv",), modes=tuple(modes), num_samples=1, num_turns=args.turns, seed=args.seed,
                     max_seq_len=None, gold_likelihood=False)  # timed: no probes
    rows = []
    with serve_method(instance, log_path=args.out / f"server-{method.replace('@', '-')}.log",
                      kvm_always=method.endswith("@kvm")) as server:
        conn = connect(server.url)
        warm_up(server.url)
        pgid = server.process.pid
        with PeakRss(lambda: group_pids(pgid), interval=0.1) as sampler:
            time.sleep(0.5)
            sampler.reset()
            idle = sampler.last
            for n in args.lengths:
                for mode in modes:
                    sampler.reset()
                    t0 = time.monotonic()
                    outcome = run_session(conn, task, samples[n], mode, spec, count)
                    wall = time.monotonic() - t0
                    sampler.sample()
                    rows.append({
                        "method": method, "settings": instance.to_dict(), "mode": mode,
                        "context_tokens": count(samples[n].context), "requested_tokens": n, "wall_s": wall,
                        "peak_rss_bytes": sampler.peak, "rss_samples": sampler.samples, "error": outcome.error,
                        "prompt_tokens": sum(r.prompt_tokens or 0 for r in outcome.records),
                        "completion_tokens": sum(r.completion_tokens or 0 for r in outcome.records),
                        "scores": [r.score for r in outcome.records],
                    })
                    print(f"  {method:<8} {n:>5} {mode:<13} {wall:6.1f} s  peak {sampler.peak / GIB:.2f} GiB"
                          + (f"  FAILED: {outcome.error}" if outcome.error else ""), flush=True)
    return rows, idle


def print_results(args, methods, modes, method_args, results, idle) -> bool:
    """The table and the target line; returns whether every session finished."""
    print(f"\nRetr.KV, 1 sample, {args.turns} questions, modes: {', '.join(modes)}; settings: {', '.join(method_args)}; "
          f"embedded model, one server per method")
    rows = []
    for r in results:
        base = next((x for x in results if x["method"] == methods[0] and x["mode"] == r["mode"]
                     and x["requested_tokens"] == r["requested_tokens"]), None)
        rows.append((r["method"], r["mode"], r["context_tokens"], f"{r['wall_s']:.1f}",
                     fmt_ratio(ratio(r["wall_s"], base["wall_s"] if base else None)), r["completion_tokens"],
                     f"{r['peak_rss_bytes'] / GIB:.2f}", f"{idle[r['method']] / GIB:.2f}",
                     "FAILED" if r["error"] else "ok"))
    print(table(["method", "mode", "context tok", "wall s", f"vs {methods[0]}", "completion tok", "peak RSS GiB",
                 "idle RSS GiB", "status"], rows, "<<>>>>>>>"))
    print("peak RSS: summed over the server's process group, sampled every 0.1 s during the session; "
          "idle: after warm-up, before the first session")
    if "full" in methods and any(m != "full" for m in methods) and "full@kvm" not in methods:
        print("note: full runs on SGLang's own CPU attention (torch_native), the other methods on the project's kvm "
              "backend; add full@kvm to --methods for full on the same backend")
    ok = all(r["error"] is None for r in results)
    print()
    print(target_line("every method completes every length (time and memory as measured)",
                      f"{sum(r['error'] is None for r in results)}/{len(results)} sessions", ok))
    return ok


def main(argv=None) -> None:
    args = parse_args(argv)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    modes = choice_list(args.modes, MODES, "--modes")
    method_args = tuple(args.method_arg) if args.method_arg is not None else ("budget=512",)
    try:  # bad methods / fields fail before any server starts
        instances = resolve_method_list(methods, method_args)
    except ValueError as err:
        raise SystemExit(str(err)) from None
    from transformers import AutoTokenizer

    from benchmarks.samples import kv_samples
    from data.generators import token_counter
    from runtime.model import resolve_model
    from runtime.versions import versions

    tokenizer = AutoTokenizer.from_pretrained(resolve_model(EMBEDDED))
    count = token_counter(tokenizer)
    samples = {n: kv_samples(tokenizer, context_tokens=n, turns=args.turns, seed=args.seed)[0] for n in args.lengths}
    args.out.mkdir(parents=True, exist_ok=True)
    load_before, started = load_note(), time.monotonic()

    results, idle = [], {}
    for method in methods:
        rows, idle[method] = measure_method(method, instances[method], args, modes, samples, count)
        results += rows

    load_after, total = load_note(), time.monotonic() - started
    print_results(args, methods, modes, method_args, results, idle)
    print(f"{load_text(load_before)} before, {load_text(load_after)} after; total {total:.0f} s")
    png = None if args.no_plot else plot(args.out / "length_scaling.png", results, methods, modes)
    path = write_json(args.out / "result.json", {
        "benchmark": NAME, "args": {k: str(v) for k, v in vars(args).items()}, "method_args": method_args,
        "versions": versions(), "results": results, "idle_rss_bytes": idle, "png": str(png) if png else None,
        "load_before": load_before, "load_after": load_after, "total_s": total,
    })
    if png:
        print(f"wrote {png}")
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
