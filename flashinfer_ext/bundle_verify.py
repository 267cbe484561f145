"""Checks of an installed FlashInfer bundle (`python -m flashinfer_ext.bundle verify|prebuild`).

verify: the bundle matches its manifest; `import flashinfer` works and imports no distribution the
GPU machine's image lacks (beyond the bundle's); the JIT specs of every kernel the executor calls
resolve (bf16, head_dim 128: single prefill FA2 with a custom mask, FA3 with and without a sliding
window, cascade merge, packbits), and no source they compile nor header it includes is one the
trim dropped (the manifest lists those); `flashinfer_ext.gpu_check` imports without SGLang. It needs torch but no GPU: set FLASHINFER_CUDA_ARCH_LIST (default here "9.0", the
H200) so the specs resolve on a machine without CUDA.

prebuild: compiles all those specs in one ninja run (MAX_JOBS / FLASHINFER_JIT_PREBUILD_MAX_JOBS
parallel jobs), so the check's first calls find the kernels built.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile
import time
from pathlib import Path

from flashinfer_ext.bundle import INCLUDE_RE, check_manifest

# Packages on the GPU machine's image ("cuda", read 2026-11-17): an import of anything else, unless
# the bundle carries it, would fail there.
DEVICE_IMAGE = """
    absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
    build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
    cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn einops
    equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec gpytorch
    grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio iniconfig
    interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib kiwisolver
    lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml markdown
    markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack multidict
    multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda numpy numpyro
    nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime nvidia-cudnn-cu13
    nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse nvidia-cusparselt-cu13
    nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13 nvidia-nvtx onnx onnx-ir
    onnxruntime onnxscript opencv-python-headless optax opt-einsum opt-einsum-fx optimistix
    orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy portalocker
    prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments pyparsing
    pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock pytest-timeout
    pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich sacrebleu safetensors
    scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece sentence-transformers
    setuptools shellingham simplejson six sortedcontainers statsmodels sympy tabulate tensorboard
    tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm tokenizers toolz torch
    torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm transformers treescope triton
    typer typing-extensions typing-inspect urllib3 uvloop wadler-lindig werkzeug wheel wrapt xarray
    xxhash yarl zipp
""".split()
HEAD_DIM = 128


def _env_defaults() -> None:
    # Read when flashinfer.jit.env is imported: set before the first `import flashinfer`.
    os.environ.setdefault("FLASHINFER_CUDA_ARCH_LIST", "9.0")
    os.environ.setdefault("FLASHINFER_WORKSPACE_BASE", tempfile.mkdtemp(prefix="flashinfer-ws-"))


def spec_factories() -> list[tuple[str, object]]:
    """(label, zero-argument factory of the JIT spec) for each kernel `flashinfer_executor.attend`
    and gpu_check's dense baseline run."""
    _env_defaults()
    import torch
    from flashinfer.jit.attention.modules import gen_single_prefill_module
    from flashinfer.jit.cascade import gen_cascade_module
    from flashinfer.jit.quantization import gen_quantization_module

    bf16 = torch.bfloat16

    def prefill(backend: str, window: bool):
        return lambda: gen_single_prefill_module(backend, bf16, bf16, bf16, HEAD_DIM, HEAD_DIM, 0, window, False, False)

    # fa2 serves custom-mask calls; fa3 (Hopper) the causal ones, with window_left for static plans.
    return [
        ("cascade (merge_state_in_place)", gen_cascade_module),
        ("quantization (packbits of masks)", gen_quantization_module),
        ("single prefill fa2", prefill("fa2", False)),
        ("single prefill fa3", prefill("fa3", False)),
        ("single prefill fa3 + window", prefill("fa3", True)),
    ]


def kernel_specs() -> list:
    return [make() for _, make in spec_factories()]


def include_dirs(spec) -> list[Path]:
    from flashinfer.jit import env as jit_env

    dirs = [*jit_env.CCCL_INCLUDE_DIRS, jit_env.FLASHINFER_INCLUDE_DIR, jit_env.FLASHINFER_CSRC_DIR]
    dirs += [*jit_env.CUTLASS_INCLUDE_DIRS, jit_env.SPDLOG_INCLUDE_DIR, *(spec.extra_include_dirs or [])]
    try:
        import tvm_ffi.libinfo

        dirs += [Path(tvm_ffi.libinfo.find_include_path()), Path(tvm_ffi.libinfo.find_dlpack_include_path())]
    except Exception as exc:  # reported below as unresolved tvm/dlpack headers
        print(f"  tvm_ffi include path unknown: {type(exc).__name__}: {exc}")
    return dirs


def missing_files(spec, dropped: set[str]) -> list[str]:
    """Sources of `spec` and the headers they reach that the trim dropped ("file <- includer").

    dropped: paths relative to the flashinfer package of the headers the trim left out; an include
    found nowhere else is the toolkit's, the C++ library's, or one FlashInfer never shipped.
    """
    from flashinfer.jit import env as jit_env

    root = jit_env.FLASHINFER_DATA.parent.resolve()
    dirs = include_dirs(spec)
    missing, seen = [], set()
    todo = list(spec.sources)
    for src in spec.sources:
        if not Path(src).is_file():
            missing.append(f"{src} (source)")
    todo = [Path(s) for s in spec.sources if Path(s).is_file()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for m in INCLUDE_RE.finditer(path.read_bytes()):
            name = m.group(1).decode("utf-8", "replace").strip()
            found = next((d / name for d in [path.parent, *dirs] if (d / name).is_file()), None)
            if found is not None:
                todo.append(found.resolve())
            elif any(_under(d / name, root) in dropped for d in [path.parent, *dirs]):
                missing.append(f"{name} <- {path}")
    return sorted(set(missing))


def _under(path: Path, root: Path) -> str:
    try:
        return Path(os.path.normpath(path.resolve())).relative_to(root).as_posix()
    except ValueError:
        return ""


def foreign_imports(allowed: set[str]) -> list[str]:
    """Top-level modules now imported whose distribution is neither stdlib nor in `allowed`."""
    import importlib.metadata as md

    dists = md.packages_distributions()
    out = []
    for top in sorted({m.split(".")[0] for m in sys.modules}):
        if top in sys.stdlib_module_names or top.startswith("_"):
            continue
        names = {_key(d) for d in dists.get(top, [])}
        if names and not names & allowed:
            out.append(f"{top} ({', '.join(sorted(names))})")
    return out


def _key(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def verify(out: Path, site: Path | None = None) -> int:
    problems = check_manifest(out)
    for p in problems:
        print(f"manifest: {p}")
    _env_defaults()
    t0 = time.monotonic()
    import flashinfer

    print(f"flashinfer {flashinfer.__version__} from {Path(flashinfer.__file__).parent} ({time.monotonic() - t0:.1f}s import)")
    import json

    manifest = json.loads((out / "manifest.json").read_text()) if (out / "manifest.json").is_file() else {"wheels": []}
    bundled = {_key(w["name"]) for w in manifest["wheels"]}
    want = next((w["version"] for w in manifest["wheels"] if _key(w["name"]) == "flashinfer-python"), None)
    if want and flashinfer.__version__ != want:
        problems.append(f"flashinfer {flashinfer.__version__} imported, the bundle has {want}")
    if site is not None and not Path(flashinfer.__file__).resolve().is_relative_to(site.resolve()):
        problems.append(f"flashinfer imported from {flashinfer.__file__}, not from {site}")
    import flashinfer_ext.flashinfer_executor  # noqa: F401
    import flashinfer_ext.gpu_check  # noqa: F401

    if any(m == "sglang" or m.startswith("sglang.") for m in sys.modules):
        problems.append("the check's imports pulled in sglang, which the GPU machine lacks")
    allowed = {_key(n) for n in DEVICE_IMAGE} | bundled | {"flashinfer-python", "scbench-sglang"}
    for name in foreign_imports(allowed):
        # Not fatal: an optional import (e.g. torch's of dill) is skipped where the package is absent.
        print(f"  note: imported here, not on the GPU image: {name}")
    dropped = set(manifest.get("flashinfer_trim", {}).get("dropped_headers", []))
    factories = spec_factories()
    for label, make in factories:
        try:
            spec = make()
        except Exception as exc:  # a template or source the spec reads is absent: report, go on
            problems.append(f"{label}: spec not resolved ({type(exc).__name__}: {exc})")
            continue
        gone = missing_files(spec, dropped)
        print(f"spec {label}: {spec.name}, {len(spec.sources)} sources, {'ok' if not gone else f'{len(gone)} missing'}")
        problems += [f"{label}: missing {g}" for g in gone]
    for p in problems:
        print(f"verify: {p}")
    print(f"verify: {'FAILED' if problems else 'ok'} ({len(factories)} JIT specs)")
    return 1 if problems else 0


def prebuild() -> int:
    """Compile every kernel spec in one ninja run; 0 on success."""
    from flashinfer.jit.core import build_jit_specs

    specs = kernel_specs()
    t0 = time.monotonic()
    print(f"prebuild: {len(specs)} modules: {', '.join(s.name for s in specs)}", flush=True)
    build_jit_specs(specs, verbose=False)
    print(f"prebuild: done in {time.monotonic() - t0:.0f}s", flush=True)
    return 0
