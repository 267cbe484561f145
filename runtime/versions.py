"""The versions a run records: Python, this project, the serving stack, and the git commit."""

from __future__ import annotations

import platform
import subprocess
from importlib import metadata
from pathlib import Path

DISTRIBUTIONS = ("scbench-sgl", "sglang", "torch", "transformers", "datasets")


def versions() -> dict[str, str]:
    """{"python": ..., each of DISTRIBUTIONS: its version or "not installed", "git_commit": ...}."""
    out = {"python": platform.python_version()}
    for dist in DISTRIBUTIONS:
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            out[dist] = "not installed"
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, timeout=5
        )
        commit = done.stdout.strip() if done.returncode == 0 else ""
    except (OSError, subprocess.SubprocessError):
        commit = ""
    out["git_commit"] = commit or "unknown"
    return out
