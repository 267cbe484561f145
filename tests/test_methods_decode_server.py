"""The exact top-k oracle, RocketKV and RocketKV-MT sweep budgets like every method: `bench` on the
tiny model, both modes, two budgets that bite on a ~500-token context."""

from __future__ import annotations

import json

import pytest

from tests.test_cli import cli, point_dirs

pytestmark = pytest.mark.server

METHODS = ("topk", "rocketkv", "rocketkv_mt")
BUDGETS = (256, 512)


def test_bench_sweeps_topk_and_rocketkv_over_budgets(tiny_model_path, tmp_path):
    done = cli(
        "bench", "--model", str(tiny_model_path), "--samples", "1", "--turns", "2", "--context-tokens", "500",
        "--methods", ",".join(METHODS), "--budgets", ",".join(map(str, BUDGETS)), "--out", str(tmp_path),
        timeout=1500,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    dirs = point_dirs(tmp_path)
    assert len(dirs) == len(METHODS) * len(BUDGETS)
    kept: dict[tuple[str, int], list[float]] = {}
    for d in dirs:
        header = json.loads((d / "header.json").read_text())
        assert header["finished"]
        method = header["method"]
        records = [json.loads(l) for l in (d / "samples.jsonl").read_text().splitlines()]
        assert not [r for r in records if r.get("error")]
        assert {(r["mode"], r["turn"]) for r in records} == {
            (mode, t) for mode in ("multi-turn", "multi-request") for t in (0, 1)
        }
        kept[(method["method"], method["budget"])] = [r["kept_kv"] for r in records]
    assert set(kept) == {(m, b) for m in METHODS for b in BUDGETS}
    for (method, budget), shares in kept.items():  # 256 bites for all; 512 may cover topk's sequence
        assert all(0 < s < (1 if budget == 256 else 1 + 1e-9) for s in shares), (method, budget, shares)
    for method in METHODS:  # a larger budget attends more keys
        assert sum(kept[(method, 256)]) < sum(kept[(method, 512)]), (method, kept)
