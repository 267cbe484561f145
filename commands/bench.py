"""`python cli.py bench`: run SCBench sessions on a managed or existing SGLang server."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors, split_list

EMBEDDED = "embedded:smollm2-135m-instruct"  # kept in sync with runtime.model.EMBEDDED_MODEL (tested)


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for dist in ("scbench-sgl", "sglang", "torch", "transformers", "datasets"):
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


def resolve_tasks(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Task names as given (`all` = every task), validated; HF config names are accepted."""
    from programs.registry import get_task, task_names

    if tasks == ("all",):
        return tuple(task_names())
    return tuple(get_task(task).name for task in tasks)


def _validate(modes, history) -> None:
    from programs.registry import check_history, check_mode

    for mode in modes:
        check_mode(mode)
    check_history(history)


def bench(
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks (e.g. kv,vt), or 'all'.")] = "kv",
    modes: Annotated[str, typer.Option(help="Comma-separated: multi-turn, multi-request.")] = "multi-turn,multi-request",
    samples: Annotated[int, typer.Option(min=1, help="Sessions per task.")] = 3,
    context_tokens: Annotated[int, typer.Option(min=64, help="Context size of generated samples, in model tokens.")] = 2000,
    turns: Annotated[int, typer.Option(min=1, help="Turns per generated session.")] = 4,
    seed: Annotated[int, typer.Option(help="Seed of the offline generators.")] = 0,
    data: Annotated[Optional[str], typer.Option(help="SCBench rows: a JSONL/parquet file, a folder laid out like the hub repo, 'hub', or 'fixtures'. Default: generate offline (bundled fixtures for tasks without a generator).")] = None,
    history: Annotated[str, typer.Option(help="Multi-turn history: gold (SCBench default) or model.")] = "gold",
    max_turns: Annotated[Optional[int], typer.Option(min=1, help="Ask at most this many turns per session (default: all; SCBench's runner used 5).")] = None,
    max_seq_len: Annotated[Optional[int], typer.Option(min=256, help="Cut the context in the middle so the first prompt fits (SCBench's --max_seq_length).")] = None,
    chat_template: Annotated[bool, typer.Option(help="Wrap prompts in the model's chat template.")] = True,
    model: Annotated[str, typer.Option(help="HF model id or local path for the managed server.")] = EMBEDDED,
    endpoint: Annotated[Optional[str], typer.Option(help="Use an existing SGLang server at this URL instead of starting one.")] = None,
    device: Annotated[str, typer.Option(help="Device of the managed server: cpu or cuda.")] = "cpu",
    max_total_tokens: Annotated[int, typer.Option(min=1024, help="KV pool size of the managed server, in tokens.")] = 32768,
    out: Annotated[Path, typer.Option(help="Folder that receives the run directory.")] = Path("runs"),
) -> None:
    """Run SCBench sessions (both shared-context modes) and print score and KV reuse per turn."""
    with one_line_errors():
        _bench(
            tasks=split_list(tasks), modes=split_list(modes), samples=samples, context_tokens=context_tokens,
            turns=turns, seed=seed, data=data, history=history, max_turns=max_turns, max_seq_len=max_seq_len,
            chat_template=chat_template, model=model, endpoint=endpoint, device=device, max_total_tokens=max_total_tokens, out=out,
        )


def _bench(*, tasks, modes, samples, context_tokens, turns, seed, data, history, max_turns, max_seq_len,
           chat_template, model, endpoint, device, max_total_tokens, out) -> None:
    from runtime.errors import UsageError

    tasks = resolve_tasks(tasks)
    _validate(modes, history)
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'. Valid: cpu, cuda")

    import contextlib

    from rich.console import Console

    from bench import rundir
    from bench.display import make_display
    from bench.export import export_official
    from bench.runner import BenchSpec, run_bench
    from bench.summary import results_table
    from runtime.backend import connect
    from runtime.model import cache_dir, resolve_model
    from runtime.server import ManagedServer, ServerOptions

    spec = BenchSpec(
        tasks=tasks, modes=modes, num_samples=samples, context_tokens=context_tokens, num_turns=turns,
        seed=seed, data=data, history=history, max_turns=max_turns, chat_template=chat_template,
        max_seq_len=max_seq_len,
    )
    display = make_display()
    run_dir = rundir.create_run_dir(out, "-".join(tasks) if len(tasks) <= 3 else f"{len(tasks)}tasks")
    header = {"argv": sys.argv, "versions": _versions(), "run_dir": str(run_dir)}

    with contextlib.ExitStack() as stack:
        if endpoint:
            url = endpoint
            header["server"] = {"endpoint": endpoint}
        else:
            model_path = resolve_model(model)
            options = ServerOptions(model_path=model_path, device=device, max_total_tokens=max_total_tokens)
            display.message(f"starting SGLang server for {model} (log: {run_dir / 'server.log'})")
            server = stack.enter_context(ManagedServer(options, run_dir / "server.log", cache_dir()))
            url = server.url
            header["server"] = {
                "managed": True, "model": model, "model_path": model_path, "device": device,
                "command": options.command(server.port), "startup_seconds": round(server.startup_seconds, 2),
            }
            display.message(f"server ready at {url} in {server.startup_seconds:.1f}s")
        conn = connect(url, chat_template=chat_template)
        header["model_path"] = conn.model_path
        header["chat_template"] = conn.chat
        summary = run_bench(spec, conn, run_dir, display, header)

    export_official(run_dir)
    console = Console()
    console.print(results_table(summary))
    console.print(f"wall time {summary['wall_seconds']:.1f}s; run directory: {run_dir}")
