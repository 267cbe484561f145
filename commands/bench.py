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
    methods: Annotated[str, typer.Option(help="Comma-separated KV methods, one managed server each: full, a_shape, tri_shape, minference, flexprefill, streamingllm, snapkv, pyramidkv, kivi, fp8, quest, or a composition like minference+snapkv.")] = "full",
    method_arg: Annotated[Optional[list[str]], typer.Option("--method-arg", help="field=value for every method that has the field (repeatable), e.g. budget=2048 or minference.budget=1024.")] = None,
) -> None:
    """Run SCBench sessions (both shared-context modes) and print score and KV reuse per turn."""
    with one_line_errors():
        _bench(
            tasks=split_list(tasks), modes=split_list(modes), samples=samples, context_tokens=context_tokens,
            turns=turns, seed=seed, data=data, history=history, max_turns=max_turns, max_seq_len=max_seq_len,
            chat_template=chat_template, model=model, endpoint=endpoint, device=device, max_total_tokens=max_total_tokens, out=out,
            methods=split_list(methods), method_args=tuple(method_arg or ()),
        )


def resolve_methods(methods: tuple[str, ...], method_args: tuple[str, ...], endpoint: str | None) -> list:
    """Validated method instances; an existing endpoint runs whatever attention it was started with."""
    from runtime.errors import UsageError

    if not methods:
        raise UsageError("--methods is empty; give at least one method (e.g. full)")
    try:
        from flashinfer_ext.server_settings import parse_methods

        resolved = parse_methods(methods, method_args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if endpoint and (len(resolved) > 1 or method_args):
        raise UsageError(
            "with --endpoint the server's own attention runs: give at most one method (its label) and no "
            "--method-arg; to compare methods, let bench start one server per method (omit --endpoint)"
        )
    return resolved


def _bench(*, tasks, modes, samples, context_tokens, turns, seed, data, history, max_turns, max_seq_len,
           chat_template, model, endpoint, device, max_total_tokens, out, methods, method_args) -> None:
    from runtime.errors import UsageError

    tasks = resolve_tasks(tasks)
    _validate(modes, history)
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'. Valid: cpu, cuda")
    kv_methods = resolve_methods(methods, method_args, endpoint)

    import contextlib

    from rich.console import Console

    from bench import rundir
    from bench.display import make_display
    from bench.export import export_official
    from bench.runner import BenchSpec, run_bench
    from bench.summary import results_table

    spec = BenchSpec(
        tasks=tasks, modes=modes, num_samples=samples, context_tokens=context_tokens, num_turns=turns,
        seed=seed, data=data, history=history, max_turns=max_turns, chat_template=chat_template,
        max_seq_len=max_seq_len,
    )
    display = make_display()
    run_dir = rundir.create_run_dir(out, "-".join(tasks) if len(tasks) <= 3 else f"{len(tasks)}tasks")
    header = {
        "argv": sys.argv, "versions": _versions(), "run_dir": str(run_dir),
        "methods": [m.to_dict() for m in kv_methods], "servers": {},
    }

    for method in kv_methods:
        with contextlib.ExitStack() as stack:
            conn, server_info, stats_path = _serve(
                stack, method, model=model, endpoint=endpoint, device=device,
                max_total_tokens=max_total_tokens, chat_template=chat_template, run_dir=run_dir, display=display,
            )
            header["servers"][method.name] = server_info
            header["model_path"] = conn.model_path
            header["chat_template"] = conn.chat
            summary = run_bench(spec, conn, run_dir, display, header, method=method.name, stats_path=stats_path)

    export_official(run_dir)
    console = Console(width=None if sys.stdout.isatty() else 160)  # pipes and logs get the whole table
    console.print(results_table(summary))
    console.print(f"wall time {summary['wall_seconds']:.1f}s; run directory: {run_dir}")


def _serve(stack, method, *, model, endpoint, device, max_total_tokens, chat_template, run_dir, display):
    """A connection to a server running `method`: the existing endpoint, or a managed server (its
    lifetime tied to `stack`) started with the method's backend. Returns (conn, info, stats path)."""
    from flashinfer_ext.server_settings import server_settings
    from runtime.backend import connect
    from runtime.model import cache_dir, resolve_model
    from runtime.server import ManagedServer, ServerOptions

    if endpoint:
        return connect(endpoint, chat_template=chat_template), {"endpoint": endpoint}, None
    model_path = resolve_model(model)
    stats_path = (run_dir / f"kept_kv.{method.name}.jsonl").resolve()
    settings = server_settings(method, device, str(stats_path))
    options = ServerOptions(
        model_path=model_path, device=device, max_total_tokens=max_total_tokens,
        attention_backend=settings.attention_backend, extra_args=settings.extra_args, env=settings.env,
    )
    log_path = run_dir / f"server.{method.name}.log"
    display.message(f"{method.name}: starting SGLang server for {model} (log: {log_path})")
    server = stack.enter_context(ManagedServer(options, log_path, cache_dir()))
    display.message(f"{method.name}: server ready at {server.url} in {server.startup_seconds:.1f}s")
    info = {
        "managed": True, "model": model, "model_path": model_path, "device": device, "method": method.to_dict(),
        "command": options.command(server.port), "env": settings.env,
        "startup_seconds": round(server.startup_seconds, 2),
    }
    conn = connect(server.url, chat_template=chat_template)
    return conn, info, stats_path if settings.uses_plugin else None
