"""GPU check of the FlashInfer executor against the torch executor, per KV method and length.

    python -m flashinfer_ext.gpu_check [--lengths 8192,16384,32768] [--methods a,b] [--json OUT] [--table OUT.md]

For every method (all of `kvmethods.method_names()` plus "minference+snapkv") and length it builds
seeded random bf16 q/k/v (32 query heads, 8 KV heads, head_dim 128) on CUDA, asks the method for
its plans (prefill; a follow-up extend of the last rows over the rest when the method plans it
sparsely; decode of the last row for "decode" methods; a one-row decode plan restricted
by `compress(q[-32:], k)` for "compress" methods; quantization methods attend over
`quantize_kv(k, v)`), and runs each plan through FlashInfer (`flashinfer_executor.attend`), the
torch executor on the CPU (the oracle) and dense causal FlashInfer. It prints one row per plan:
max |out| and |lse| differences to the oracle, FlashInfer and dense times (CUDA events, median
of 5 after a warmup, 1 when the warmup took over --slow-s) and the speedup; quantization rows add
the relative error to unquantized dense attention. The oracle is bounded: prefills longer than
--oracle-full compare their last --oracle-rows rows only (an exact suffix sub-plan), and a
--budget-s guard (JIT compilation of the first calls included) skips every case left once it is
spent. --json and --table (markdown) are rewritten after every row, so a run stopped from outside
keeps what it measured.

Exits 0 with one line when CUDA or flashinfer is missing; 1 when a comparison is out of tolerance.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import statistics
import sys
import time
import traceback

import torch

from kvmethods import get_method, method_names
from kvmethods.plan import SparsePlan

SKIP_LINE = "gpu_check: needs CUDA and flashinfer; skipped"
HQ, HKV, D = 32, 8, 128
EXTEND_ROWS = 256  # rows of the follow-up extend case
EXTRA_METHODS = ("minference+snapkv",)
COLUMNS = [  # (key, width, format); text columns are left-aligned
    ("method", 18, "{}"), ("phase", 8, "{}"), ("tokens", 6, "{}"), ("rows", 6, "{}"), ("density", 7, "{:.3f}"),
    ("out_err", 8, "{:.2e}"), ("lse_err", 8, "{:.2e}"), ("fi_ms", 9, "{:.3f}"), ("dense_ms", 9, "{:.3f}"),
    ("speedup", 7, "{:.2f}"), ("quant_rel_err", 13, "{:.2e}"), ("status", 0, "{}"),
]  # fmt: skip
TEXT = ("method", "phase", "status")


def parse_args(argv=None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m flashinfer_ext.gpu_check", description=__doc__.split("\n")[0])
    ap.add_argument("--lengths", default="8192,16384,32768", help="comma-separated prompt lengths")
    ap.add_argument("--methods", default="", help="comma-separated method names (default: all)")
    ap.add_argument("--json", default=None, help="write the results as JSON to this path")
    ap.add_argument("--table", default=None, help="write the results as a markdown table to this path")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--layer", type=int, default=2, help="layer passed to every hook (2: Quest's first sparse layer)")
    ap.add_argument("--num-layers", type=int, default=32)
    ap.add_argument("--oracle-full", type=int, default=8192, help="longest prefill the oracle checks on every row")
    ap.add_argument("--oracle-rows", type=int, default=256, help="last rows the oracle checks on longer prefills")
    ap.add_argument("--atol", type=float, default=1e-2, help="out: |fi - torch| <= atol + rtol |torch|")
    ap.add_argument("--rtol", type=float, default=1e-2)
    ap.add_argument("--lse-tol", type=float, default=1e-2, help="max |lse difference| (base 2)")
    ap.add_argument("--budget-s", type=float, default=220.0, help="skip the remaining checks after this long")
    ap.add_argument("--slow-s", type=float, default=0.5, help="time once, not 5 times, when the warmup took longer")
    args = ap.parse_args(argv)
    args.lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    return args


def missing() -> str | None:
    """Why the check cannot run here (None when it can)."""
    if not torch.cuda.is_available():
        return "no CUDA device"
    try:
        import flashinfer  # noqa: F401
    except Exception as exc:  # an import that fails for any reason means: no usable flashinfer
        return f"flashinfer not importable ({type(exc).__name__})"
    return None


def suffix_plan(plan: SparsePlan, rows: int) -> tuple[int, SparsePlan]:
    """(start, sub): the exact plan of query rows [start, q_len), start <= q_len - rows.

    Rows keep their positions (the query offset grows by start), the dense rows stay the last
    ones, and start is rounded down to a block edge so the block mask's query blocks and the slash
    bands' row blocks line up.
    """
    start = max(0, plan.q_len - rows)
    edge = math.lcm(plan.query_block if plan.block_mask is not None else 1, plan.slash_band or 1)
    start -= start % edge
    n = plan.q_len - start
    block = None if plan.block_mask is None else plan.block_mask[:, start // plan.query_block :]
    return start, dataclasses.replace(plan, q_len=n, block_mask=block, dense_rows=min(plan.dense_rows, n))


def compare(out, lse, ref_out, ref_lse, atol: float, rtol: float) -> tuple[float, float, float]:
    """(max |out diff|, max excess over atol + rtol |ref|, max |lse diff|); inf when -inf rows differ."""
    out, ref_out = out.float().cpu(), ref_out.float().cpu()
    diff = (out - ref_out).abs()
    excess = float((diff - atol - rtol * ref_out.abs()).max()) if diff.numel() else -1.0
    lse, ref_lse = lse.float().cpu(), ref_lse.float().cpu()
    if not torch.equal(torch.isinf(lse), torch.isinf(ref_lse)) or bool(torch.isnan(lse).any()):
        return float(diff.max()), excess, math.inf
    fin = torch.isfinite(ref_lse)
    lse_err = float((lse[fin] - ref_lse[fin]).abs().max()) if bool(fin.any()) else 0.0
    return (float(diff.max()) if diff.numel() else 0.0), excess, lse_err


def time_ms(fn, reps: int = 5, slow_s: float = 0.5) -> float:
    """Median CUDA-event time of fn() over reps runs (1 when the warmup took over slow_s seconds:
    long sparse plans at 128K make hundreds of calls), after one warmup."""
    t0 = time.monotonic()
    fn()
    torch.cuda.synchronize()
    if time.monotonic() - t0 > slow_s:
        reps = 1
    times = []
    for _ in range(reps):
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        fn()
        b.record()
        b.synchronize()
        times.append(a.elapsed_time(b))
    return statistics.median(times)


def plan_cases(method, q, k, layer: int, num_layers: int) -> list[tuple[str, torch.Tensor, SparsePlan]]:
    """(phase, query rows, plan) for each phase the method does real work in; "extend" is a
    follow-up over the cached rest (the last rows), when the method plans it sparsely (Quest)."""
    phases, kw = method.phases, {"layer": layer, "num_layers": num_layers}
    cases = []
    if "prefill" in phases or "store" in phases or not phases:  # `full` has no phases
        cases.append(("prefill", q, method.prefill_plan(q, k, **kw)))
    extend = q[-min(EXTEND_ROWS, max(1, q.shape[0] // 4)) :]
    plan = method.prefill_plan(extend, k, **kw)
    if not plan.is_full:
        cases.append(("extend", extend, plan))
    if "decode" in phases:
        cases.append(("decode", q[-1:], method.decode_plan(q[-1:], k, **kw)))
    if "compress" in phases:
        keep = method.compress(q[-32:], k, **kw)
        cases.append(("compress", q[-1:], method.decode_plan(q[-1:], k, **kw).with_visibility(keep)))
    return cases


def check_case(name, phase, qq, kk, vv, plan, args, dense_ms, unquant=None, timer=None) -> dict:
    """One table row: `plan` through FlashInfer vs the torch oracle, timed against dense FlashInfer.

    unquant: the unquantized (k, v) when kk / vv are quantized (adds quant_rel_err).
    """
    import flashinfer

    from flashinfer_ext.flashinfer_executor import attend as fi_attend
    from kvmethods.torch_executor import attend as torch_attend

    scale = 1.0 / math.sqrt(qq.shape[-1])
    row = {"method": name, "phase": phase, "tokens": plan.kv_len, "density": plan.density(sample=32)}
    out, lse = fi_attend(qq, kk, vv, plan, scale=scale)
    if plan.q_len <= 1 or plan.kv_len <= args.oracle_full:
        start, sub = 0, plan
    else:
        start, sub = suffix_plan(plan, args.oracle_rows)
    ref_out, ref_lse = torch_attend(qq[start:].cpu(), kk.cpu(), vv.cpu(), sub, scale=scale)
    row["rows"] = sub.q_len
    row["out_err"], excess, row["lse_err"] = compare(out[start:], lse[start:], ref_out, ref_lse, args.atol, args.rtol)
    ok = excess <= 0 and row["lse_err"] <= args.lse_tol
    if unquant is not None:
        dense = flashinfer.single_prefill_with_kv_cache(qq, *unquant, causal=True, sm_scale=scale)
        row["quant_rel_err"] = float((out.float() - dense.float()).norm() / dense.float().norm().clamp_min(1e-30))
    timer = timer or time_ms
    row["fi_ms"] = timer(lambda: fi_attend(qq, kk, vv, plan, scale=scale))
    key = (qq.shape[0], kk.shape[0])  # dense time depends on the shapes only
    if key not in dense_ms:
        dense_ms[key] = timer(lambda: flashinfer.single_prefill_with_kv_cache(qq, kk, vv, causal=True, sm_scale=scale))
    row["dense_ms"] = dense_ms[key]
    row["speedup"] = row["dense_ms"] / max(row["fi_ms"], 1e-9)
    row["status"] = "ok" if ok else "FAIL"
    return row


def run(args, device: str = "cuda", timer=None, make_method=None, on_row=None) -> list[dict]:
    """All rows of the table (printed as they come; on_row(rows) after each). device / timer /
    make_method let a CPU test drive the same loop with a stand-in flashinfer and small method
    settings."""
    make_method = make_method or get_method
    timer = timer or (lambda fn: time_ms(fn, slow_s=args.slow_s))
    names = [m for m in args.methods.split(",") if m.strip()] or [*method_names(), *EXTRA_METHODS]
    rows: list[dict] = []
    t0 = time.monotonic()
    over = lambda: time.monotonic() - t0 > args.budget_s  # noqa: E731
    skipped = f"skipped (over --budget-s {args.budget_s:g})"

    def add(row: dict) -> None:
        rows.append(row)
        print(_format(row), flush=True)
        if on_row is not None:
            on_row(rows)

    for length in args.lengths:
        g = torch.Generator(device=device).manual_seed(args.seed + length)
        q, k, v = (torch.randn(length, h, D, generator=g, device=device, dtype=torch.bfloat16) for h in (HQ, HKV, HKV))
        dense_ms: dict = {}
        for name in names:
            base = {"method": name, "tokens": length}
            if over():
                add({**base, "phase": "-", "status": skipped})
                continue
            try:
                method = make_method(name)
                quant = "store" in method.phases
                kk, vv = method.quantize_kv(k, v) if quant else (k, v)
                for phase, qq, plan in plan_cases(method, q, k, args.layer, args.num_layers):
                    if over():
                        add({**base, "phase": phase, "status": skipped})
                        continue
                    unquant = (k, v) if quant else None
                    add(check_case(name, phase, qq, kk, vv, plan, args, dense_ms, unquant, timer))
            except Exception as exc:  # one broken method must not hide the others' results
                traceback.print_exc(file=sys.stderr)
                add({**base, "phase": "-", "status": f"FAIL ({type(exc).__name__}: {exc})"[:200]})
        del q, k, v
        if device == "cuda":
            torch.cuda.empty_cache()
    return rows


def _format(row: dict) -> str:
    cells = []
    for key, width, fmt in COLUMNS:
        text = "-" if row.get(key) is None else fmt.format(row[key])
        cells.append(text.ljust(width) if key in TEXT else text.rjust(width))
    return "  ".join(cells).rstrip()


def main(argv=None) -> int:
    args = parse_args(argv)
    reason = missing()
    if reason is not None:
        print(f"{SKIP_LINE} ({reason})")
        return 0
    import flashinfer

    device = torch.cuda.get_device_name()
    version = getattr(flashinfer, "__version__", "unknown")
    print(f"device: {device}; flashinfer {version}; torch {torch.__version__}")
    print("(the first calls may JIT-compile FlashInfer kernels)")
    print("  ".join(key.ljust(w) if key in TEXT else key.rjust(w) for key, w, _ in COLUMNS).rstrip())
    meta = {"device": device, "flashinfer": version, "torch": torch.__version__, "lengths": args.lengths}
    rows = run(args, on_row=lambda rows: write_outputs(args, rows, meta))
    failed = [r for r in rows if str(r.get("status", "")).startswith("FAIL")]
    print(f"gpu_check: {len(rows)} rows, {len(failed)} failed")
    write_outputs(args, rows, {**meta, "finished": True})
    return 1 if failed else 0


def write_outputs(args, rows: list[dict], meta: dict) -> None:
    if args.json:
        write_json(args.json, rows, **meta)
    if args.table:
        write_table(args.table, rows, **meta)


def write_json(path: str, rows: list[dict], **meta) -> None:
    """{**meta, "rows": rows}; an infinite error is written as the string "inf" (strict JSON)."""
    clean = [{k: ("inf" if isinstance(x, float) and math.isinf(x) else x) for k, x in r.items()} for r in rows]
    with open(path + ".part", "w") as f:
        json.dump({**meta, "rows": clean}, f, indent=1)
    os.replace(path + ".part", path)


def markdown_table(rows: list[dict], **meta) -> str:
    """The rows as a markdown table under one line of meta (device, versions)."""
    head = "; ".join(f"{k} {v}" for k, v in meta.items() if k != "lengths")
    keys = [key for key, _, _ in COLUMNS]
    lines = [head, "", "| " + " | ".join(keys) + " |", "|" + "|".join("---" if k in TEXT else "---:" for k in keys) + "|"]
    for row in rows:
        cells = ["-" if row.get(k) is None else fmt.format(row[k]) for k, _, fmt in COLUMNS]
        lines.append("| " + " | ".join(c.replace("|", "/") for c in cells) + " |")
    return "\n".join(lines) + "\n"


def write_table(path: str, rows: list[dict], **meta) -> None:
    with open(path + ".part", "w") as f:
        f.write(markdown_table(rows, **meta))
    os.replace(path + ".part", path)


if __name__ == "__main__":
    sys.exit(main())
