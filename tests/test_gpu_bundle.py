"""The GPU bundle: the FlashInfer wheel trim (file selection on a small fake wheel), the wheel it
writes, the manifest, gpu_check's incremental outputs and time guard, and the device script's
CPU dry run (when a bundle has been built here)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from flashinfer_ext import bundle, gpu_check
from kvmethods import get_method
from tests.test_flashinfer_executor import SMALL, fake_flashinfer  # noqa: F401  (fixture)

REPO = Path(__file__).resolve().parents[1]
CSRC = "flashinfer/data/csrc"

FAKE = {
    "flashinfer/__init__.py": b"from .a import x\nfrom . import b\nimport flashinfer.sub.c\n",
    "flashinfer/a.py": b"x = 1\ndef f():\n    from .lazy import g  # a function-level import\n    return g\n",
    "flashinfer/lazy.py": b"from .b import y\ng = 2\n",
    "flashinfer/b.py": b"import os\ny = 3\n",
    "flashinfer/sub/__init__.py": b"",
    "flashinfer/sub/c.py": b"from .. import a\nfrom ..jit.core import spec\n",
    "flashinfer/sub/config.json": b"{}",
    "flashinfer/sub/kernel.cu": b"// a kernel source beside a kept module: dropped",
    "flashinfer/jit/__init__.py": b"",
    "flashinfer/jit/core.py": b"spec = None\n",
    "flashinfer/unused.py": b"import flashinfer.b\n",
    "flashinfer/unused_pkg/__init__.py": b"",
    "flashinfer/unused_pkg/table.json": b"{}",
    f"{CSRC}/single_prefill.cu": b'#include "helper.h"\n#include <flashinfer/x.cuh>\n#include <cuda_runtime.h>\n',
    f"{CSRC}/single_prefill.jinja": b'#include "templ.h"\n',
    f"{CSRC}/helper.h": b'  #  include "../csrc/deep.h"\n',
    f"{CSRC}/deep.h": b"// leaf\n",
    f"{CSRC}/templ.h": b"",
    f"{CSRC}/other_kernel.cu": b'#include "other.h"\n',
    f"{CSRC}/other.h": b"",
    "flashinfer/data/include/flashinfer/x.cuh": b'#include "y.cuh"\n',
    "flashinfer/data/include/flashinfer/unreached.cuh": b"",
    "flashinfer/data/cutlass/include/cute/a.hpp": b"",
    "flashinfer/data/cutlass/examples/e.cu": b"",
    "flashinfer/data/spdlog/include/spdlog/s.h": b"",
    "flashinfer_python-0.0.1.dist-info/METADATA": b"Name: flashinfer-python\nVersion: 0.0.1\n",
    "flashinfer_python-0.0.1.dist-info/WHEEL": b"Wheel-Version: 1.0\n",
    "flashinfer_python-0.0.1.dist-info/RECORD": b"stale\n",
}
KERNELS = ("single_prefill.cu", "single_prefill.jinja")


def test_select_files_keeps_the_import_and_include_closures():
    keep = bundle.select_files(FAKE, KERNELS)
    assert keep == {
        "flashinfer/__init__.py",
        "flashinfer/a.py",
        "flashinfer/lazy.py",  # imported inside a function
        "flashinfer/b.py",
        "flashinfer/sub/__init__.py",
        "flashinfer/sub/c.py",
        "flashinfer/sub/config.json",  # data of a kept package
        "flashinfer/jit/__init__.py",  # parent package of a reached module
        "flashinfer/jit/core.py",
        f"{CSRC}/single_prefill.cu",
        f"{CSRC}/single_prefill.jinja",
        f"{CSRC}/helper.h",
        f"{CSRC}/deep.h",  # through "../csrc/deep.h"
        f"{CSRC}/templ.h",
        "flashinfer/data/include/flashinfer/x.cuh",  # header trees kept whole
        "flashinfer/data/include/flashinfer/unreached.cuh",
        "flashinfer/data/cutlass/include/cute/a.hpp",
        "flashinfer/data/spdlog/include/spdlog/s.h",
        "flashinfer_python-0.0.1.dist-info/METADATA",
        "flashinfer_python-0.0.1.dist-info/WHEEL",
    }


def test_select_files_refuses_a_wheel_without_the_kernel_sources():
    with pytest.raises(ValueError, match="single_prefill_sm90.cu"):
        bundle.select_files(FAKE, ("single_prefill.cu", "single_prefill_sm90.cu"))


def test_python_closure_resolves_relative_and_absolute_imports():
    files = {
        "pkg/__init__.py": b"",
        "pkg/m/__init__.py": b"from ..n import k\n",
        "pkg/n/__init__.py": b"from . import k\n",
        "pkg/n/k.py": b"from pkg import other as o\n",
        "pkg/other.py": b"",
        "pkg/alone.py": b"",
    }
    assert bundle.python_closure(files, ["pkg/m/__init__.py"], "pkg") == {
        "pkg/__init__.py", "pkg/m/__init__.py", "pkg/n/__init__.py", "pkg/n/k.py", "pkg/other.py"
    }  # fmt: skip


def test_include_resolution_prefers_the_includers_folder():
    files = {"d/a/h.h": b"", "inc/h.h": b"", "inc/sub/z.h": b""}
    assert bundle.resolve_include("h.h", "d/a/x.cu", files, ("inc",)) == "d/a/h.h"
    assert bundle.resolve_include("h.h", "d/b/x.cu", files, ("inc",)) == "inc/h.h"
    assert bundle.resolve_include("sub/../sub/z.h", "d/b/x.cu", files, ("inc",)) == "inc/sub/z.h"
    assert bundle.resolve_include("cuda.h", "d/b/x.cu", files, ("inc",)) is None


def write_fake_wheel(path: Path, files=FAKE) -> Path:
    with zipfile.ZipFile(path, "w") as z:
        for name, data in files.items():
            z.writestr(name, data)
    return path


def test_trim_wheel_writes_the_kept_files_and_a_true_record(tmp_path):
    src = write_fake_wheel(tmp_path / "flashinfer_python-0.0.1-py3-none-any.whl")
    dest = tmp_path / "out" / src.name
    dest.parent.mkdir()
    facts = bundle.trim_wheel(src, dest, KERNELS)
    keep = bundle.select_files(FAKE, KERNELS)
    with zipfile.ZipFile(dest) as z:
        names = set(z.namelist())
        record = z.read("flashinfer_python-0.0.1.dist-info/RECORD").decode().splitlines()
        contents = {n: z.read(n) for n in names}
    assert names == keep | {"flashinfer_python-0.0.1.dist-info/RECORD"}
    assert all(contents[n] == FAKE[n] for n in keep)
    rows = dict(line.split(",", 1) for line in record)
    assert rows.pop("flashinfer_python-0.0.1.dist-info/RECORD") == ","
    for name, rest in rows.items():
        digest, size = rest.removeprefix("sha256=").split(",")
        want = base64.urlsafe_b64encode(hashlib.sha256(contents[name]).digest()).rstrip(b"=").decode()
        assert digest == want and int(size) == len(contents[name])
    assert facts["files_kept"] == len(keep) and facts["files_dropped"] == len(FAKE) - len(keep)
    assert facts["source_sha256"] == hashlib.sha256(src.read_bytes()).hexdigest()
    # Dropped files an #include could reach: csrc's, never cutlass examples or Python modules.
    assert facts["dropped_headers"] == ["data/csrc/other.h", "data/csrc/other_kernel.cu"]


def test_manifest_records_and_checks_every_wheel(tmp_path):
    a = tmp_path / "apache_tvm_ffi-0.1.15-cp312-cp312-manylinux_2_28_x86_64.whl"
    b = write_fake_wheel(tmp_path / "flashinfer_python-0.0.1-py3-none-any.whl")
    a.write_bytes(b"tvm")
    manifest = bundle.build_manifest([b, a], {"files_kept": 3})
    assert [(w["name"], w["version"]) for w in manifest["wheels"]] == [("apache_tvm_ffi", "0.1.15"), ("flashinfer_python", "0.0.1")]
    assert manifest["wheels"][0]["sha256"] == hashlib.sha256(b"tvm").hexdigest()
    assert manifest["total_size"] == 3 + b.stat().st_size and manifest["flashinfer_trim"] == {"files_kept": 3}
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    assert bundle.check_manifest(tmp_path) == []
    a.write_bytes(b"TVM")  # same size, other content
    (tmp_path / "stray-1.0-py3-none-any.whl").write_bytes(b"")
    problems = bundle.check_manifest(tmp_path)
    assert any(a.name in p and "sha256" in p for p in problems) and any("stray" in p for p in problems)
    b.unlink()
    assert any(b.name in p and "missing" in p for p in bundle.check_manifest(tmp_path))
    assert "missing" in bundle.check_manifest(tmp_path / "nowhere")[0]


def test_wheel_names_and_requirement_keys():
    assert bundle.wheel_name_version("nvidia_ml_py-13.615.71-py3-none-any.whl") == ("nvidia_ml_py", "13.615.71")
    with pytest.raises(ValueError):
        bundle.wheel_name_version("not-a-wheel.zip")
    assert bundle._dist_key("apache-tvm-ffi>=0.1.11,<0.2") == bundle._dist_key("apache_tvm_ffi") == "apache_tvm_ffi"


def test_pip_download_fetches_one_wheel_per_requirement(tmp_path):
    """Downloads a small pure-Python wheel; skipped where the package index cannot be reached."""
    try:
        got = bundle.pip_download(["tabulate==0.9.0"], tmp_path)
    except subprocess.CalledProcessError:
        pytest.skip("no package index reachable (offline)")
    assert [w.name for w in got] == ["tabulate-0.9.0-py3-none-any.whl"]


# -- gpu_check: outputs written after every row, and the time guard -------------------------------


def test_gpu_check_writes_json_and_table_after_every_row(fake_flashinfer, tmp_path):  # noqa: F811
    args = gpu_check.parse_args(["--lengths", "200", "--methods", "full,streamingllm",
                                 "--json", str(tmp_path / "r.json"), "--table", str(tmp_path / "r.md")])  # fmt: skip
    seen = []

    def on_row(rows):
        gpu_check.write_outputs(args, rows, {"device": "cpu"})
        seen.append(len(json.loads((tmp_path / "r.json").read_text())["rows"]))

    rows = gpu_check.run(args, "cpu", timer=lambda fn: (fn(), 1.0)[1], on_row=on_row,
                         make_method=lambda name: get_method(name, **SMALL.get(name, {})))  # fmt: skip
    assert seen == list(range(1, len(rows) + 1)) and len(rows) >= 2
    table = (tmp_path / "r.md").read_text().splitlines()
    assert table[0] == "device cpu" and table[2].startswith("| method | phase | tokens |")
    assert len(table) == 4 + len(rows) and all(line.count("|") == len(gpu_check.COLUMNS) + 1 for line in table[2:])
    assert "| full | prefill | 200 |" in table[4] and table[4].rstrip().endswith("| ok |")


def test_gpu_check_time_guard_skips_every_case_once_spent(tmp_path):
    args = gpu_check.parse_args(["--lengths", "64,128", "--methods", "full,snapkv", "--budget-s", "0"])
    rows = gpu_check.run(args, "cpu", timer=lambda fn: 1.0)
    assert [(r["method"], r["tokens"]) for r in rows] == [("full", 64), ("snapkv", 64), ("full", 128), ("snapkv", 128)]
    assert all(r["status"] == "skipped (over --budget-s 0)" for r in rows)
    assert gpu_check.markdown_table(rows, device="x").count("skipped") == 4


# -- the device script --------------------------------------------------------------------------


def test_device_script_parses_and_rejects_unknown_arguments():
    script = REPO / "scripts" / "gpu_check_device.sh"
    assert subprocess.run(["bash", "-n", str(script)]).returncode == 0
    res = subprocess.run(["bash", str(script), "--bogus"], capture_output=True, text=True)
    assert res.returncode == 2 and "usage" in res.stderr


BUILT = (REPO / ".gpu_bundle" / "manifest.json").is_file() and any((REPO / ".gpu_bundle-dryrun").glob("*.whl"))


@pytest.mark.skipif(not BUILT, reason="no bundle built here (python -m flashinfer_ext.bundle build)")
def test_built_bundle_is_intact_and_small():
    folder = REPO / ".gpu_bundle"
    assert bundle.check_manifest(folder) == []
    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["total_size"] < 40 * 2**20
    fi = next(folder.glob("flashinfer_python-*.whl"))
    with zipfile.ZipFile(fi) as z:
        names = set(z.namelist())
    assert {f"{CSRC}/{s}" for s in bundle.KERNEL_SOURCES} <= names
    csrc = {n for n in names if n.startswith(CSRC + "/")}
    assert len(csrc) < 30 and "data/csrc/batch_prefill.cu" in manifest["flashinfer_trim"]["dropped_headers"]
    assert not any(n.endswith((".cubin", ".so")) for n in names)


@pytest.mark.skipif(not BUILT, reason="no bundle built here (python -m flashinfer_ext.bundle build)")
def test_device_script_dry_run(tmp_path):
    """Installs the bundle, imports flashinfer, resolves the kernels' JIT specs against the trimmed
    tree, and takes gpu_check's no-CUDA path."""
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(tmp_path), "OUT": str(tmp_path / "out"),
           "PYTHON": sys.executable}  # fmt: skip
    res = subprocess.run(["bash", "scripts/gpu_check_device.sh", "--dry-run"], cwd=REPO, env=env,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "verify: ok (5 JIT specs)" in res.stdout
    assert gpu_check.SKIP_LINE in res.stdout
    assert "verify: ok" in (tmp_path / "out" / "gpu_check.log").read_text()
