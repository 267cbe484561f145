"""The CPU compatibility layer: the sgl_kernel fallback, its scope, and the torchvision guard.

Each check runs in a fresh interpreter, because the layer acts at interpreter start (.pth hook).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import torch


def run_python(code: str, env_extra: dict[str, str], extra_path: str | None = None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "SGLANG_USE_CPU_ENGINE"}
    env.update(env_extra)
    if extra_path:
        env["PYTHONPATH"] = extra_path + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True, timeout=120)


def test_fallback_serves_sgl_kernel_only_with_the_cpu_engine():
    code = """
        import importlib.util, sgl_kernel
        print(sgl_kernel.__file__)
    """
    on = run_python(code, {"SGLANG_USE_CPU_ENGINE": "1"})
    assert on.returncode == 0, on.stderr
    assert on.stdout.strip().endswith("sgl_kernel_fallback.py")
    off = run_python(code, {})
    assert off.returncode != 0 and "No module named 'sgl_kernel'" in off.stderr


def test_a_real_sgl_kernel_is_never_shadowed(tmp_path):
    (tmp_path / "sgl_kernel").mkdir()
    (tmp_path / "sgl_kernel" / "__init__.py").write_text("REAL = True\n")
    done = run_python("import sgl_kernel; print(sgl_kernel.REAL)", {"SGLANG_USE_CPU_ENGINE": "1"}, str(tmp_path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_speculative_only_kernels_import_but_refuse_to_run():
    code = """
        from sgl_kernel import verify_tree_greedy_cpu
        try:
            verify_tree_greedy_cpu()
        except NotImplementedError as err:
            print("refused:", err)
    """
    done = run_python(code, {"SGLANG_USE_CPU_ENGINE": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("refused: sgl_kernel.verify_tree_greedy_cpu")


def test_unknown_kernel_names_still_fail_to_import():
    done = run_python("from sgl_kernel import fused_moe_cpu", {"SGLANG_USE_CPU_ENGINE": "1"})
    assert done.returncode != 0 and "cannot import name 'fused_moe_cpu'" in done.stderr


def test_torchvision_imports_in_any_process():
    done = run_python("import torchvision.transforms as T; print(T.Compose.__name__)", {})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "Compose"


def test_assign_req_to_token_pool_fallback_matches_the_definition():
    from sglang_cpu_compat.sgl_kernel_fallback import assign_req_to_token_pool_cpu

    req_to_token = torch.zeros(4, 10, dtype=torch.int32)
    out_cache_loc = torch.arange(100, 107, dtype=torch.int64)
    assign_req_to_token_pool_cpu(
        torch.tensor([2, 0]), req_to_token, torch.tensor([3, 0]), torch.tensor([6, 4]), out_cache_loc, 10
    )
    assert req_to_token[2, 3:6].tolist() == [100, 101, 102]
    assert req_to_token[0, 0:4].tolist() == [103, 104, 105, 106]
    assert req_to_token[1].sum() == 0 and req_to_token[3].sum() == 0
    assert req_to_token[2, :3].sum() == 0


def test_copy_all_layer_kv_cache_fallback_copies_slots_in_every_buffer():
    from sglang_cpu_compat.sgl_kernel_fallback import copy_all_layer_kv_cache_cpu

    buffers = [torch.arange(8 * 4, dtype=torch.float32).reshape(8, 4) + 1000 * i for i in range(3)]
    expected = [b.clone() for b in buffers]
    for e in expected:
        e[[5, 6]] = e[[1, 2]]
    ptrs = torch.tensor([b.data_ptr() for b in buffers], dtype=torch.int64)
    strides = torch.tensor([b.stride(0) * b.element_size() for b in buffers], dtype=torch.int64)
    copy_all_layer_kv_cache_cpu(ptrs, strides, torch.tensor([5, 6]), torch.tensor([1, 2]))
    for got, want in zip(buffers, expected):
        assert torch.equal(got, want)
