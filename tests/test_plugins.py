"""A task and a KV method added from outside the project, with no edit to it: a toy method as one
file and a toy task as one module (with its own generator and fixture) in a temporary package, named
in SCBENCH_PLUGINS. The CLI finds them in `--methods`, `data list`, `data show`, `data generate`, a
bench on the tiny model (the method rebuilt by name inside SGLang's server processes) and the report.

Everything runs in subprocesses: registering into this process would leak into the other tests,
whose lists come from the same registries.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from discovery import PLUGINS_ENV
from tests.conftest import REPO

PACKAGE = "scbench_toy_plugins"
METHOD = "first_half"
TASK = "toy_echo"

METHOD_MODULE = '''
"""Keeps the first half of the context: a toy KV-dropping method, one file."""

from dataclasses import dataclass

import torch

from kvmethods.base import DropMethod
from kvmethods.registry import register


@register("first_half")
@dataclass(frozen=True)
class FirstHalf(DropMethod):
    """Keeps the first half of each head's context keys (a toy; no paper).

    Fields:
        budget (4096): unused.
        heads ("query"): one selection per query head, or per KV head.
    """

    def layer_budget(self, layer: int, num_layers: int, kv_len: int) -> int:
        return max(1, kv_len // 2)

    def _keep(self, q_window, k, n, *, layer, num_layers):
        keep = torch.zeros(self.selection_heads(q_window.shape[1], k.shape[1]), k.shape[0], dtype=torch.bool, device=k.device)
        keep[:, :n] = True
        return keep
'''

TASK_MODULE = '''
"""Toy.Echo: name the word at a position of a numbered list; a toy task, one module."""

import random
from pathlib import Path

from data.sample import Sample, Turn
from programs.metrics.scorers import on_answer
from programs.metrics.text import substring_match
from programs.registry import register_task
from programs.spec import TaskSpec

WORDS = "apple river stone cloud maple tiger copper violet harbor lantern".split()


def generate(count_tokens, *, num_samples, context_tokens, num_turns, seed):
    rng = random.Random(seed)
    samples = []
    for index in range(num_samples):
        words = []
        while count_tokens(" ".join(f"{i}. {w}" for i, w in enumerate(words + ["x"]))) <= context_tokens:
            words.append(rng.choice(WORDS))
        asked = rng.sample(range(len(words)), num_turns)
        turns = tuple(Turn(f"Which word is number {i}?", words[i]) for i in asked)
        samples.append(Sample(str(index), " ".join(f"{i}. {w}" for i, w in enumerate(words)), turns))
    return samples


TOY_ECHO = register_task(
    TaskSpec(
        name="toy_echo",
        config="toy_echo",
        category="Toy",
        context_template="Remember the numbered words.\\n\\n{context}",
        max_new_tokens=6,
        scorer=on_answer(substring_match),
        generator=generate,
        fixture=Path(__file__).with_name("toy_echo.jsonl"),
    )
)
'''

FIXTURE_ROW = {"id": 0, "context": "0. apple 1. river 2. stone", "multi_turns": [
    {"input": "Which word is number 1?", "answer": "river"}, {"input": "Which word is number 2?", "answer": "stone"}]}


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """The environment of a shell where the toy package is importable and named in SCBENCH_PLUGINS."""
    root = tmp_path_factory.mktemp("plugins")
    package = root / PACKAGE
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / f"{METHOD}.py").write_text(textwrap.dedent(METHOD_MODULE).lstrip())
    (package / f"{TASK}.py").write_text(textwrap.dedent(TASK_MODULE).lstrip())
    (package / f"{TASK}.jsonl").write_text(json.dumps(FIXTURE_ROW) + "\n")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": os.pathsep.join([str(root), str(REPO)]),
           PLUGINS_ENV: f"{PACKAGE}.{METHOD},{PACKAGE}.{TASK}"}
    env.pop("SCBENCH_DEBUG", None)
    return env


def cli(env: dict[str, str], *args: str, timeout: float = 900) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "cli.py", *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


def without_plugins(env: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in env.items() if k != PLUGINS_ENV}


def test_the_toy_method_is_among_the_methods(plugin_env, tmp_path):
    done = cli(plugin_env, "bench", "--methods", "nope", "--out", str(tmp_path))
    assert done.returncode == 2
    (line,) = done.stderr.strip().splitlines()
    assert line.startswith("error: Unknown method 'nope'.") and f" {METHOD}," in line.partition("Available:")[2]
    done = cli(plugin_env, "bench", "--methods", METHOD, "--method-arg", "window=3", "--out", str(tmp_path))
    assert done.returncode == 2
    assert done.stderr.strip() == f"error: Method '{METHOD}' has no field 'window'. Fields: budget, heads"
    plain = cli(without_plugins(plugin_env), "bench", "--methods", "nope", "--out", str(tmp_path))
    assert METHOD not in plain.stderr  # it comes from the plugin, not from the project
    assert not any(tmp_path.iterdir())


def test_the_toy_task_is_listed_shown_and_generated(plugin_env, tmp_path, tiny_model_path):
    listed = cli(plugin_env, "data", "list")
    assert listed.returncode == 0, listed.stderr
    assert listed.stdout.strip().splitlines()[-1].split() == [TASK, TASK, "Toy", "generator"]
    assert TASK not in cli(without_plugins(plugin_env), "data", "list").stdout
    shown = cli(plugin_env, "data", "show", TASK)
    assert shown.returncode == 0, shown.stderr
    assert "0. apple 1. river" in shown.stdout and "river" in shown.stdout.partition("turn 1")[2]
    out = tmp_path / "toy.jsonl"
    made = cli(plugin_env, "data", "generate", TASK, "--out", str(out), "--samples", "2", "--turns", "2",
               "--context-tokens", "120", "--tokenizer", str(tiny_model_path))
    assert made.returncode == 0, made.stderr
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [len(r["multi_turns"]) for r in rows] == [2, 2] and {"id", "context", "multi_turns"} == set(rows[0])


def test_a_plugin_that_does_not_import_is_one_line(plugin_env):
    done = cli({**plugin_env, PLUGINS_ENV: "no_such_lab.tasks"}, "data", "list")
    assert done.returncode == 2
    assert done.stderr.strip() == (f"error: {PLUGINS_ENV}: cannot import 'no_such_lab.tasks' "
                                   "(ModuleNotFoundError: No module named 'no_such_lab')")


@pytest.mark.server
def test_a_bench_and_its_report_run_the_toy_task_and_method(plugin_env, tmp_path, tiny_model_path):
    done = cli(plugin_env, "bench", "--tasks", TASK, "--methods", f"full,{METHOD}", "--model", str(tiny_model_path),
               "--samples", "1", "--turns", "2", "--context-tokens", "300", "--max-total-tokens", "4096",
               "--out", str(tmp_path))
    assert done.returncode == 0, done.stderr[-3000:]
    (sweep,) = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert sorted(p.name for p in sweep.iterdir() if (p / "header.json").is_file()) == [METHOD, "full"]
    assert (sweep / "report" / "score_per_turn.png").is_file()  # the bench drew the report's figures
    header = json.loads((sweep / METHOD / "header.json").read_text())
    assert header["method"]["method"] == METHOD and header["finished"]
    assert header["server"]["env"][PLUGINS_ENV] == plugin_env[PLUGINS_ENV]  # the server processes import it too
    records = [json.loads(line) for line in (sweep / METHOD / "samples.jsonl").read_text().splitlines()]
    assert len(records) == 2 * 2 and {r["task"] for r in records} == {TASK}
    assert not any(r.get("error") for r in records)
    # The server rebuilt the method by name: the context's prefill kept about half of its keys.
    kept = [r["kept_kv"] for r in records]
    assert all(k is not None and 0.3 < k < 0.8 for k in kept), kept

    report = cli(plugin_env, "report", str(sweep), "--json", "--no-plots")
    assert report.returncode == 0, report.stderr
    data = json.loads(report.stdout)
    text = json.dumps(data)
    assert METHOD in text and TASK in text and '"Toy"' in text
    assert cli(plugin_env, "report", str(sweep), "--no-plots").returncode == 0
