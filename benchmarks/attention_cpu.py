"""CPU benchmark of the torch executor: sparse prefill vs dense causal attention, kept-KV ratios.

    OMP_NUM_THREADS=1 .venv/bin/python benchmarks/attention_cpu.py [--lengths 4096 16384 32768]

One run measures, side by side and at each length, the prefill attention of one layer
(Hq=4, Hkv=2, D=64, float32) with the executor's dense causal path and with each sparse-prefill
method's plan (plan time + attention time, median of a few repetitions; fewer at 32K), plus
torch's own scaled_dot_product_attention as an outside reference, with each plan's density and
mean keys per row. It then reports the fraction of the context that each KV-dropping method keeps
at its default budget.

Inputs are synthetic but shaped like LLM attention: Gaussian q/k plus an attention-sink direction
on the first keys and a local component (random Fourier features of an RBF kernel, so q_i . k_j
grows as |i - j| shrinks). On i.i.d. Gaussian inputs the dynamic methods (MInference,
FlexPrefill) would select arbitrary, scattered keys and gain little.

Target: A-shape and Tri-shape with budget 1024 at 16K tokens at least 4x faster than dense.
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from kvmethods import SparsePlan, get_method  # noqa: E402
from kvmethods.torch_executor import attend  # noqa: E402
from benchmarks.measure import load_note, load_text  # noqa: E402

HQ, HKV, D = 4, 2, 64
SCALE = 1 / math.sqrt(D)
SPARSE = {
    "a_shape": dict(budget=1024),
    "tri_shape": dict(budget=1024),
    "minference": {},
    "minference(exact)": {"slash_mode": "exact"},
    "flexprefill": {},
}
DROPPING = ("streamingllm", "snapkv", "pyramidkv")
TARGET_LEN, TARGET_SPEEDUP = 16384, 4.0


def synthetic_qkv(n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    q = torch.randn(n, HQ, D, generator=g) * 0.5
    k = torch.randn(n, HKV, D, generator=g) * 0.5
    v = torch.randn(n, HKV, D, generator=g)
    m, length_scale, amp = 24, 500.0, 12.0
    freqs = torch.randn(m, generator=g) / length_scale
    phase = torch.rand(m, generator=g) * 2 * math.pi
    local = torch.cos(torch.arange(n).float()[:, None] * freqs + phase) * math.sqrt(2.0 / m)
    q[..., :m] += amp * local[:, None]
    k[..., :m] += amp * local[:, None]
    k[:4, :, m : m + 8] += 3.0  # attention sinks
    q[..., m : m + 8] += 1.0
    return q, k, v


def median_time(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def reps_for(n: int) -> int:
    return 5 if n <= 4096 else (3 if n <= 16384 else 2)


def sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    g = HQ // HKV
    qs = q.permute(1, 0, 2)[None]
    ks = k.repeat_interleave(g, dim=1).permute(1, 0, 2)[None]
    vs = v.repeat_interleave(g, dim=1).permute(1, 0, 2)[None]
    return torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, is_causal=True, scale=SCALE)


def keys_per_row(plan: SparsePlan, sample: int = 256) -> float:
    """Mean visible keys per (head, row) over `sample` evenly spaced rows."""
    rows = torch.linspace(0, plan.q_len - 1, min(sample, plan.q_len)).round().long().unique().tolist()
    seen = sum(int(plan.rows_mask(r, r + 1).sum()) for r in rows)
    return seen / (len(rows) * plan.num_heads)


def bench_length(n: int) -> tuple[list[tuple], dict[str, float]]:
    q, k, v = synthetic_qkv(n)
    reps = reps_for(n)
    rows = []
    dense_plan = SparsePlan.full(n, n, HKV)
    attend(q[:256], k[:256], v[:256], SparsePlan.full(256, 256, HKV), scale=SCALE)  # warm-up
    dense = median_time(lambda: attend(q, k, v, dense_plan, scale=SCALE), reps)
    rows.append((n, "dense (executor)", 0.0, dense, 1.0, 1.0, (n + 1) / 2))
    rows.append((n, "torch sdpa (ref.)", 0.0, median_time(lambda: sdpa(q, k, v), reps), None, 1.0, (n + 1) / 2))
    speedups = {}
    for name, fields in SPARSE.items():
        method = get_method(name.split("(")[0], **fields)
        plan = method.prefill_plan(q, k)
        plan_s = median_time(lambda: method.prefill_plan(q, k), reps)
        attend_s = median_time(lambda: attend(q, k, v, plan, scale=SCALE), reps)
        speedups[name] = dense / (plan_s + attend_s)
        label = name + ("(1024)" if "budget" in fields else "")
        rows.append((n, label, plan_s, attend_s, speedups[name], plan.density(sample=256), keys_per_row(plan)))
    return rows, speedups


def kept_ratios(n: int, num_layers: int = 32) -> dict[str, float]:
    q, k, _ = synthetic_qkv(n, seed=1)
    out = {}
    for name in DROPPING:
        method = get_method(name)
        kept = [
            float(method.compress(q[-64:], k, layer=layer, num_layers=num_layers).float().mean())
            for layer in range(num_layers)
        ]
        out[name] = sum(kept) / len(kept)
    return out


def print_results(lengths, all_rows, speedups, kept) -> None:
    """The prefill table, the kept-KV table and the target line."""
    header = (f"{'tokens':>7} | {'method':<18} | {'plan ms':>8} | {'attend ms':>9} | {'speedup':>7} | {'density':>7}"
              f" | {'keys/row':>8}")
    print("\nPrefill attention, one layer (speedup = dense executor time / (plan + attend))")
    print(header)
    print("-" * len(header))
    for n, label, plan_s, attend_s, speedup, density, per_row in all_rows:
        sp = f"{speedup:6.2f}x" if speedup is not None else f"{'-':>7}"
        print(f"{n:>7} | {label:<18} | {plan_s * 1e3:8.1f} | {attend_s * 1e3:9.1f} | {sp} | {density:7.3f}"
              f" | {per_row:8.0f}")
    print("density: visible (head, row, key) pairs / causal pairs; keys/row: mean visible keys per head and row "
          "(both sampled over 256 rows); minference(exact): exact diagonals instead of the kernel's bands")

    print("\nKept-KV ratio after compression (default budgets, mean over 32 layers)")
    print(f"{'tokens':>7} | " + " | ".join(f"{name:>12}" for name in DROPPING))
    for n in lengths:
        print(f"{n:>7} | " + " | ".join(f"{kept[n][name]:12.4f}" for name in DROPPING))

    if TARGET_LEN in speedups:
        got = {name: speedups[TARGET_LEN][name] for name in ("a_shape", "tri_shape")}
        met = all(x >= TARGET_SPEEDUP for x in got.values())
        detail = ", ".join(f"{name} {x:.1f}x" for name, x in got.items())
        verdict = "MET" if met else "NOT MET"
        goal = f"A-shape/Tri-shape (budget 1024) at 16K >= {TARGET_SPEEDUP:.0f}x faster than dense"
        print(f"\nTarget: {goal}: {detail} -> {verdict}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[4096, 16384, 32768])
    args = parser.parse_args()
    torch.manual_seed(0)
    print(f"torch {torch.__version__}, threads {torch.get_num_threads()}, Hq={HQ} Hkv={HKV} D={D} float32")
    load_before = load_note()
    started = time.perf_counter()

    all_rows, speedups, kept = [], {}, {}
    for n in args.lengths:
        rows, speedups[n] = bench_length(n)
        all_rows += rows
        kept[n] = kept_ratios(n)

    print_results(args.lengths, all_rows, speedups, kept)
    print(f"{load_text(load_before)} before, {load_text(load_note())} after; "
          f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
