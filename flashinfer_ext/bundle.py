"""A trimmed FlashInfer wheel and the wheels it needs, for a GPU machine without network access.

    python -m flashinfer_ext.bundle build [--out .gpu_bundle] [--wheel FLASHINFER.whl]
    python -m flashinfer_ext.bundle verify [--out .gpu_bundle]     (needs torch; see bundle_verify)
    python -m flashinfer_ext.bundle prebuild                        (needs CUDA: compiles the kernels)

`build` downloads (pip download, cp312 manylinux x86-64) the flashinfer-python wheel and the
dependency wheels that the GPU machine's image lacks, then trims the FlashInfer wheel to what the
executor (`flashinfer_ext.flashinfer_executor`) and `flashinfer_ext.gpu_check` use:

- the Python modules statically reachable from `flashinfer/__init__.py` (every `import` in a kept
  module, function-level imports included), with the data files of their packages;
- the CUDA sources the JIT specs of the kernels called compile (`KERNEL_SOURCES`: single prefill
  FA2 and FA3, cascade merge, packbits) and their `#include` closure over FlashInfer's include
  paths; the header trees a compile can reach by macro-built includes (CCCL, CUTLASS, spdlog and
  FlashInfer's own headers) are kept whole, so no header falls back to the CUDA toolkit's copy;
- everything else (other kernels' sources, the experimental and MoE packages nothing imports) is
  dropped. The trimmed wheel keeps its name and version, with a new RECORD.

It writes the wheels and `manifest.json` (versions, sizes, sha256) to --out and prints the size.
This module is stdlib-only: it runs where torch is not installed.
"""

from __future__ import annotations

import argparse
import ast
import base64
import hashlib
import json
import re
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterable, Mapping
from pathlib import Path, PurePosixPath

FLASHINFER_REQ = "flashinfer-python==0.7.4"
# Requires-Dist of flashinfer-python 0.7.4 that the GPU machine's image lacks and `import flashinfer`
# or its JIT build needs. Not carried: cuda-tile, nccl-extensions, nccl4py, nvidia-cudnn-frontend,
# nvidia-cutlass-dsl (flashinfer imports each under a guard, and the kernels called use none),
# and cuda-python (the image has its parts, cuda-bindings / cuda-core / cuda-pathfinder).
DEVICE_DEPS = ("apache-tvm-ffi>=0.1.11,<0.2",)
# Pure-Python requirements the GPU image has but a development machine may not: the CPU dry run
# installs them beside the bundle (never carried).
DRY_RUN_DEPS = ("nvidia-ml-py", "tabulate")
DEVICE_PYTHON = "3.12"
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "any")

PKG = "flashinfer"
DATA = f"{PKG}/data"
CSRC = f"{DATA}/csrc"
# Include search order of FlashInfer's JIT build (jit/cpp_ext.py build_common_cflags): CCCL with -I,
# then FlashInfer's headers, csrc, CUTLASS and spdlog as -isystem. A quoted include is first looked
# up beside the including file.
INCLUDE_DIRS = (
    f"{DATA}/cccl/cub",
    f"{DATA}/cccl/libcudacxx/include",
    f"{DATA}/cccl/thrust",
    f"{DATA}/include",
    CSRC,
    f"{DATA}/cutlass/include",
    f"{DATA}/cutlass/tools/util/include",
    f"{DATA}/spdlog/include",
)
KEEP_WHOLE = (f"{DATA}/cccl/", f"{DATA}/include/", f"{DATA}/cutlass/include/", f"{DATA}/cutlass/tools/util/include/", f"{DATA}/spdlog/")
# csrc files the JIT specs of the kernels called read or compile (jit/attention/modules.py
# gen_customize_single_prefill_module for fa2 and fa3, jit/cascade.py, jit/quantization.py).
KERNEL_SOURCES = (
    "single_prefill.cu",
    "single_prefill_jit_binding.cu",
    "single_prefill_customize_config.jinja",
    "single_prefill_kernel_inst.jinja",
    "single_prefill_sm90.cu",
    "single_prefill_sm90_jit_binding.cu",
    "single_prefill_sm90_customize_config.jinja",
    "single_prefill_sm90_kernel_inst.jinja",
    "cascade.cu",
    "flashinfer_cascade_binding.cu",
    "quantization.cu",
    "csf_scales.cu",
    "flashinfer_quantization_binding.cu",
)
PY_ROOTS = (f"{PKG}/__init__.py",)
SOURCE_SUFFIXES = {".cu", ".cuh", ".h", ".hpp", ".cpp", ".c", ".cc", ".inl", ".ptx", ".inc", ".cubin", ".so"}
INCLUDE_RE = re.compile(rb'^[ \t]*#[ \t]*include[ \t]*[<"]([^>"\n]+)[>"]', re.MULTILINE)


# -- trim (pure functions over {path: bytes}) ---------------------------------------------------


def module_file(files: Mapping[str, bytes] | Iterable[str], dotted: str) -> str | None:
    """The wheel path of module `dotted` (a .py file or a package's __init__.py), or None."""
    base = dotted.replace(".", "/")
    for path in (f"{base}.py", f"{base}/__init__.py"):
        if path in files:
            return path
    return None


def _module_name(path: str) -> str:
    p = PurePosixPath(path)
    parts = list(p.parent.parts) if p.name == "__init__.py" else [*p.parent.parts, p.stem]
    return ".".join(parts)


def _imports(path: str, source: bytes) -> set[str]:
    """Dotted names imported anywhere in a module (relative imports resolved), with `from X import
    y` giving both X and X.y (y may be a submodule)."""
    tree = ast.parse(source, filename=path)
    name = _module_name(path)
    package = name if path.endswith("__init__.py") else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                mod = f"{base}.{node.module}" if node.module else base
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names if alias.name != "*")
    return found


def python_closure(files: Mapping[str, bytes], roots: Iterable[str] = PY_ROOTS, package: str = PKG) -> set[str]:
    """Wheel paths of every module of `package` statically reachable from `roots`, with the
    __init__.py of each enclosing package."""
    todo, seen = list(roots), set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        parts = PurePosixPath(path).parent.parts
        for i in range(1, len(parts) + 1):  # importing a module runs its packages' __init__
            init = "/".join(parts[:i]) + "/__init__.py"
            if init in files and init not in seen:
                todo.append(init)
        for dotted in _imports(path, files[path]):
            if dotted == package or dotted.startswith(package + "."):
                target = module_file(files, dotted)
                if target is not None and target not in seen:
                    todo.append(target)
    return seen


def resolve_include(name: str, including: str, files: Mapping[str, bytes], include_dirs=INCLUDE_DIRS) -> str | None:
    """The wheel path `#include name` in file `including` resolves to, or None (a system or CUDA
    toolkit header, or a file the JIT generates)."""
    for base in (str(PurePosixPath(including).parent), *include_dirs):
        path = _normalize(f"{base}/{name}")
        if path in files:
            return path
    return None


def _normalize(path: str) -> str:
    out: list[str] = []
    for part in path.split("/"):
        if part == "..":
            if out:
                out.pop()
        elif part not in ("", "."):
            out.append(part)
    return "/".join(out)


def include_closure(files: Mapping[str, bytes], roots: Iterable[str], include_dirs=INCLUDE_DIRS) -> set[str]:
    """Every wheel file reachable from `roots` through #include lines (all of them, whatever the
    preprocessor conditions: a superset of what one compile reads)."""
    todo, seen = [r for r in roots if r in files], set()
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for m in INCLUDE_RE.finditer(files[path]):
            target = resolve_include(m.group(1).decode("utf-8", "replace").strip(), path, files, include_dirs)
            if target is not None and target not in seen:
                todo.append(target)
    return seen


def select_files(files: Mapping[str, bytes], kernel_sources: Iterable[str] = KERNEL_SOURCES) -> set[str]:
    """The wheel paths the trimmed wheel keeps (dist-info RECORD excluded: it is rewritten)."""
    missing = [s for s in kernel_sources if f"{CSRC}/{s}" not in files]
    if missing:
        raise ValueError(f"the wheel lacks kernel sources {missing}: is it another FlashInfer version?")
    keep = {p for p in files if ".dist-info/" in p and not p.endswith("/RECORD")}
    keep |= {p for p in files if p.startswith(KEEP_WHOLE)}
    keep |= include_closure(files, [f"{CSRC}/{s}" for s in kernel_sources])
    modules = python_closure(files)
    keep |= modules
    packages = {str(PurePosixPath(m).parent) for m in modules}
    for p in files:  # data files (json, jinja, typed markers) of the kept packages, never sources
        pp = PurePosixPath(p)
        if str(pp.parent) in packages and pp.suffix != ".py" and pp.suffix not in SOURCE_SUFFIXES:
            keep.add(p)
    return keep


def record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def write_wheel(dest: Path, files: Mapping[str, bytes], keep: Iterable[str]) -> None:
    """A wheel of the kept files, with a RECORD of their hashes (pip's format)."""
    kept = sorted(keep)
    dist_info = {p.split("/")[0] for p in files if p.split("/")[0].endswith(".dist-info")}
    if len(dist_info) != 1:
        raise ValueError(f"expected one .dist-info folder in the wheel, found {sorted(dist_info)}")
    record = f"{dist_info.pop()}/RECORD"
    lines = [record_line(p, files[p]) for p in kept] + [f"{record},,"]
    tmp = dest.with_suffix(".part")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for p in kept:
            z.writestr(zipfile.ZipInfo(p, date_time=(2020, 1, 1, 0, 0, 0)), files[p], zipfile.ZIP_DEFLATED, 9)
        z.writestr(zipfile.ZipInfo(record, date_time=(2020, 1, 1, 0, 0, 0)), "\n".join(lines) + "\n")
    tmp.replace(dest)


def read_wheel(path: Path) -> dict[str, bytes]:
    with zipfile.ZipFile(path) as z:
        return {i.filename: z.read(i) for i in z.infolist() if not i.is_dir()}


def trim_wheel(src: Path, dest: Path, kernel_sources: Iterable[str] = KERNEL_SOURCES) -> dict:
    """Write the trimmed copy of wheel `src` to `dest`; returns its manifest entry's trim facts."""
    files = read_wheel(src)
    keep = select_files(files, kernel_sources)
    write_wheel(dest, files, keep)
    return {
        "source": src.name,
        "source_size": src.stat().st_size,
        "source_sha256": sha256(src),
        "files_kept": len(keep),
        "files_dropped": len(files) - len(keep),
        "kept_bytes_uncompressed": sum(len(files[p]) for p in keep),
        "kernel_sources": list(kernel_sources),
        # What an #include could have found in the full wheel: verify tells a dropped header from
        # one FlashInfer never shipped (a toolkit header, or one behind a preprocessor condition).
        "dropped_headers": sorted(p.removeprefix(f"{PKG}/") for p in files if p not in keep and p.startswith(tuple(d + "/" for d in INCLUDE_DIRS))),
    }


# -- manifest -----------------------------------------------------------------------------------


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def wheel_name_version(filename: str) -> tuple[str, str]:
    """(distribution, version) from a wheel file name (PEP 427)."""
    parts = filename.removesuffix(".whl").split("-")
    if len(parts) < 5:
        raise ValueError(f"not a wheel file name: {filename}")
    return parts[0], parts[1]


def build_manifest(wheels: Iterable[Path], trim: Mapping | None = None) -> dict:
    entries = []
    for w in sorted(wheels, key=lambda p: p.name):
        name, version = wheel_name_version(w.name)
        entries.append({"file": w.name, "name": name, "version": version, "size": w.stat().st_size, "sha256": sha256(w)})
    return {
        "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "python": DEVICE_PYTHON,
        "platforms": list(PLATFORMS),
        "wheels": entries,
        "total_size": sum(e["size"] for e in entries),
        "flashinfer_trim": dict(trim or {}),
    }


def check_manifest(folder: Path) -> list[str]:
    """Problems with a bundle folder against its manifest.json (empty when it is intact)."""
    path = folder / "manifest.json"
    if not path.is_file():
        return [f"{path}: missing (run `python -m flashinfer_ext.bundle build`)"]
    manifest = json.loads(path.read_text())
    problems = []
    listed = {e["file"] for e in manifest["wheels"]}
    for extra in sorted({p.name for p in folder.glob("*.whl")} - listed):
        problems.append(f"{extra}: not in the manifest")
    for e in manifest["wheels"]:
        w = folder / e["file"]
        if not w.is_file():
            problems.append(f"{e['file']}: missing")
        elif w.stat().st_size != e["size"] or sha256(w) != e["sha256"]:
            problems.append(f"{e['file']}: size or sha256 differs from the manifest")
    return problems


# -- download and build -------------------------------------------------------------------------


def pip_download(reqs: Iterable[str], dest: Path, python_version: str = DEVICE_PYTHON) -> list[Path]:
    """Wheels of `reqs` (no dependencies) for CPython `python_version` on manylinux x86-64."""
    dest.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version"]
    cmd += [python_version, "--implementation", "cp", "-d", str(dest)]
    for p in PLATFORMS:
        cmd += ["--platform", p]
    subprocess.run([*cmd, *reqs], check=True)
    found: dict[str, list[Path]] = {_dist_key(r): [] for r in reqs}
    for w in dest.glob("*.whl"):
        found.get(_dist_key(wheel_name_version(w.name)[0]), []).append(w)
    clash = {k: [w.name for w in v] for k, v in found.items() if len(v) != 1}
    if clash:
        raise RuntimeError(f"{dest}: expected one wheel per requirement, found {clash}; empty the folder and rerun")
    return sorted(w for v in found.values() for w in v)


def _dist_key(req: str) -> str:
    return re.sub(r"[-_.]+", "_", re.split(r"[<>=!~; \[]", req, maxsplit=1)[0]).lower()


def build(out: Path, cache: Path, wheel: Path | None = None, dry_run_deps: bool = True) -> dict:
    """Download, trim and write the bundle to `out`; the CPU dry run's extra wheels go to
    `out`-dryrun. Returns the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    for old in out.glob("*.whl"):
        old.unlink()
    if wheel is None:
        wheel = next(w for w in pip_download([FLASHINFER_REQ], cache) if w.name.startswith("flashinfer_python-"))
    trim = trim_wheel(wheel, out / wheel.name)
    deps = pip_download(list(DEVICE_DEPS), cache)
    for dep in deps:
        if not dep.name.startswith("flashinfer_python-"):
            (out / dep.name).write_bytes(dep.read_bytes())
    wheels = sorted(out.glob("*.whl"))
    manifest = build_manifest(wheels, trim)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=1) + "\n")
    if dry_run_deps:
        host = dry_run_folder(out)
        for old in host.glob("*.whl"):
            old.unlink()
        host_python = f"{sys.version_info.major}.{sys.version_info.minor}"
        pinned = [f"{wheel_name_version(w.name)[0]}=={wheel_name_version(w.name)[1]}" for w in wheels if not w.name.startswith("flashinfer_python-")]
        pip_download([*pinned, *DRY_RUN_DEPS], host, python_version=host_python)
    return manifest


def dry_run_folder(out: Path) -> Path:
    return out.parent / f"{out.name}-dryrun"


def _mib(n: int) -> str:
    return f"{n / 2**20:.1f} MiB"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m flashinfer_ext.bundle", description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="command", required=True)
    b = sub.add_parser("build", help="download, trim and write the bundle")
    b.add_argument("--out", type=Path, default=Path(".gpu_bundle"))
    b.add_argument("--cache", type=Path, default=Path(".gpu_bundle-download"), help="where downloads are kept")
    b.add_argument("--wheel", type=Path, default=None, help="a flashinfer-python wheel already downloaded")
    b.add_argument("--no-dry-run-deps", action="store_true", help="skip the wheels the CPU dry run needs")
    v = sub.add_parser("verify", help="check the manifest, import flashinfer and resolve the kernels' JIT specs")
    v.add_argument("--out", type=Path, default=Path(".gpu_bundle"))
    v.add_argument("--site", type=Path, default=None, help="where the bundle was installed (default: from flashinfer)")
    sub.add_parser("prebuild", help="compile the kernels' JIT specs in one ninja run (needs nvcc)")
    args = ap.parse_args(argv)
    if args.command == "verify":
        from flashinfer_ext.bundle_verify import verify  # needs torch: imported only here

        return verify(args.out, args.site)
    if args.command == "prebuild":
        from flashinfer_ext.bundle_verify import prebuild

        return prebuild()
    manifest = build(args.out, args.cache, args.wheel, dry_run_deps=not args.no_dry_run_deps)
    for e in manifest["wheels"]:
        print(f"{_mib(e['size']):>10}  {e['file']}")
    t = manifest["flashinfer_trim"]
    print(f"flashinfer: {t['files_kept']} files kept, {t['files_dropped']} dropped ({_mib(t['source_size'])} wheel trimmed)")
    print(f"bundle: {_mib(manifest['total_size'])} in {args.out}/")
    return 0


if __name__ == "__main__":
    sys.exit(main())
