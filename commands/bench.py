"""`python cli.py bench`: run SCBench sessions on a managed or existing SGLang server."""

from __future__ import annotations

import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors, parse_list
from runtime.versions import versions

EMBEDDED = "embedded:smollm2-135m-instruct"  # kept in sync with runtime.model.EMBEDDED_MODEL (tested)
# Without --methods, on generated data: full attention against a query-aware and a query-agnostic
# method, each keeping a quarter of the context (SCBench's finding in a few minutes).
DEFAULT_COMPARISON = ("full", "snapkv", "streamingllm")
DEFAULT_BUDGET_SHARE = 4  # the budget is --context-tokens / this


def default_methods(methods: str | None, budgets: str, context_tokens: int, data: str | None,
                    endpoints: list[str]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(methods, budgets) as given, or the default comparison when --methods is not given: on
    generated data with a managed server, `DEFAULT_COMPARISON` at a quarter of the context (unless
    --budgets says otherwise); otherwise full attention."""
    swept = parse_list(budgets, "--budgets", allow_empty=True)
    if methods is not None:
        return parse_list(methods, "--methods"), swept
    if data is not None or endpoints:
        return ("full",), swept
    return DEFAULT_COMPARISON, swept or (str(context_tokens // DEFAULT_BUDGET_SHARE),)


def resolve_tasks(tasks: tuple[str, ...]) -> tuple[str, ...]:
    """Task names as given (`all` = every task), validated; HF config names are accepted."""
    from commands.bench_checks import check_unique
    from programs.registry import get_task, task_names

    if tasks == ("all",):
        return tuple(task_names())
    resolved = tuple(get_task(task).name for task in tasks)
    check_unique(resolved, "--tasks")  # kv and scbench_kv are one task
    return resolved


def _validate(modes, history, prompts) -> None:
    from programs.registry import check_history, check_mode, check_prompts

    for mode in modes:
        check_mode(mode)
    check_history(history)
    check_prompts(prompts)


def bench(
    tasks: Annotated[str, typer.Option(help="Comma-separated tasks (e.g. kv,vt), or 'all'; each at most once.")] = "kv",
    modes: Annotated[str, typer.Option(help="Comma-separated: multi-turn, multi-request; each at most once.")] = "multi-turn,multi-request",
    samples: Annotated[Optional[int], typer.Option(min=1, help="Sessions per task (default: every row of --data, as SCBench's runner; 2 from the offline generators); at most 1,000,000, and generated sessions at most what half the available memory holds.")] = None,
    context_tokens: Annotated[int, typer.Option(min=64, help="Context size of generated samples, in model tokens; at most the model's context length (and the managed server's --max-total-tokens).")] = 2000,
    turns: Annotated[int, typer.Option(min=1, help="Turns per generated session.")] = 3,
    seed: Annotated[int, typer.Option(help="Seed of the offline generators.")] = 0,
    data: Annotated[Optional[str], typer.Option(help="SCBench rows: a JSONL/parquet file, a folder laid out like the hub repo, 'hub', or 'fixtures'. Default: generate offline (bundled fixtures for tasks without a generator).")] = None,
    history: Annotated[str, typer.Option(help="Multi-turn history: gold (SCBench default) or model.")] = "gold",
    max_turns: Annotated[int, typer.Option(min=0, help="Ask at most this many turns per session, as SCBench's --max_turns (default 5); 0: every turn.")] = 5,
    max_seq_len: Annotated[int, typer.Option(min=0, help="SCBench's --max_seq_length: cut the first prompt in the middle to fit it, less the answers (default 131072, capped to the model's context length); 0: never cut.")] = 131_072,
    prompts: Annotated[str, typer.Option(help="official: SCBench's prompts, quirks included; fixed: each quirk corrected (see README).")] = "official",
    chat_template: Annotated[bool, typer.Option(help="Wrap prompts in the model's chat template.")] = True,
    model: Annotated[str, typer.Option(help="HF model id or local path for the managed server.")] = EMBEDDED,
    endpoint: Annotated[Optional[list[str]], typer.Option("--endpoint", help="Use existing SGLang servers (repeatable; or one router URL) instead of starting one; sessions are spread over them.")] = None,
    device: Annotated[str, typer.Option(help="Device of the managed server: cpu or cuda.")] = "cpu",
    max_total_tokens: Annotated[int, typer.Option(min=1024, help="KV pool size of the managed server, in tokens; on CPU at most what half the available memory holds for the model's KV.")] = 32768,
    out: Annotated[Path, typer.Option(help="Folder that receives the sweep directory.")] = Path("runs"),
    name: Annotated[Optional[str], typer.Option(help="Sweep directory name: 1-128 of A-Z a-z 0-9 . _ + -, not starting with . or - (default: tasks + a digest of the arguments, so a rerun resumes).")] = None,
    budgets: Annotated[str, typer.Option(help="Comma-separated budgets to sweep for every method that uses one (e.g. 512,1024,2048).")] = "",
    parallel: Annotated[int, typer.Option(min=1, help="Sessions in flight at once (over all servers), 1 to 1024.")] = 1,
    methods: Annotated[Optional[str], typer.Option(help="Comma-separated KV methods, one managed server each (e.g. full,snapkv,kivi; an unknown name lists every registered one, SCBENCH_PLUGINS modules' included), or a composition like minference+snapkv. Default: full,snapkv,streamingllm at a budget of a quarter of --context-tokens on generated data; full with --data or --endpoint.")] = None,
    method_arg: Annotated[Optional[list[str]], typer.Option("--method-arg", help="field=value for every method that has the field (repeatable), e.g. budget=2048 or minference.budget=1024.")] = None,
    request_timeout: Annotated[Optional[float], typer.Option(min=0.001, help="Give up on a server that sends no reply for this many seconds, at most 1,000,000 (default: wait forever, as SGLang's frontend does); the session fails and the server is dropped if its health check fails too.")] = None,
    gold_likelihood: Annotated[bool, typer.Option(help="Per turn, teacher-force the gold answer through the turn's KV and record its NLL and token accuracy (one short prefill each).")] = True,
) -> None:
    """Run SCBench sessions (both shared-context modes) and print score, gold-answer likelihood,
    agreement with full attention and KV reuse per turn."""
    with one_line_errors():
        methods, budgets = default_methods(methods, budgets, context_tokens, data, list(endpoint or ()))
        _bench(
            tasks=parse_list(tasks, "--tasks"), modes=parse_list(modes, "--modes"), samples=samples, context_tokens=context_tokens,
            turns=turns, seed=seed, data=data, history=history, max_turns=max_turns, max_seq_len=max_seq_len, prompts=prompts,
            chat_template=chat_template, model=model, endpoints=list(endpoint or ()), device=device,
            max_total_tokens=max_total_tokens, out=out, name=name, methods=methods,
            method_args=tuple(method_arg or ()), budgets=budgets, parallel=parallel,
            request_timeout=request_timeout, gold_likelihood=gold_likelihood,
        )


def resolve_methods(methods: tuple[str, ...], method_args: tuple[str, ...], endpoint: bool) -> list:
    """Validated method instances; an existing endpoint runs whatever attention it was started with."""
    from errors import UsageError

    if not methods:
        raise UsageError("--methods is empty; give at least one method (e.g. full)")
    try:
        from kvmethods.registry import parse_methods

        resolved = parse_methods(methods, method_args)
    except ValueError as err:
        raise UsageError(str(err)) from None
    if endpoint and (len(resolved) > 1 or method_args):
        raise UsageError(
            "with --endpoint the server's own attention runs: give at most one method (its label) and no "
            "--method-arg; to compare methods, let bench start one server per method (omit --endpoint)"
        )
    return resolved


def resolve_budgets(budgets: tuple[str, ...]) -> tuple[int, ...]:
    from errors import UsageError

    try:
        values = tuple(int(b, 10) for b in budgets)
    except ValueError:
        raise UsageError(f"--budgets {','.join(budgets)}: expected comma-separated whole numbers, e.g. 512,1024") from None
    if any(b < 1 for b in values) or len(set(values)) != len(values):
        raise UsageError(f"--budgets {','.join(budgets)}: expected distinct budgets >= 1")
    return values


def check_data(spec) -> None:
    """`--data PATH` is read before anything is made: a source that cannot be read, or that has no
    usable row for a task, is a usage error (malformed rows among good ones are skipped later, with
    a message each). The hub is left to the run."""
    from data.loader import load_samples
    from errors import UsageError
    from programs.registry import get_task

    if spec.data is None or spec.data == "hub":
        return
    for name in spec.tasks:
        config = get_task(name).config
        skipped: list[str] = []
        if not load_samples(config, spec.data, limit=1, on_skip=lambda ref, why: skipped.append(f"{ref}: {why}")):
            detail = f" ({len(skipped)} malformed rows skipped; first: {skipped[0]})" if skipped else ""
            raise UsageError(f"--data {spec.data}: no usable {config} rows{detail}")


def _bench(*, tasks, modes, samples, context_tokens, turns, seed, data, history, max_turns, max_seq_len,
           chat_template, model, endpoints, device, max_total_tokens, out, name, methods, method_args,
           budgets, parallel, request_timeout=None, prompts="official", gold_likelihood=True) -> None:
    from commands.bench_checks import check_counts, check_endpoints, check_name, check_sizes, managed_model
    from errors import UsageError

    tasks = resolve_tasks(tasks)
    _validate(modes, history, prompts)
    check_name(name)
    check_counts(parallel=parallel, samples=samples, request_timeout=request_timeout)
    if device not in ("cpu", "cuda"):
        raise UsageError(f"unknown device '{device}'. Valid: cpu, cuda")
    kv_methods = resolve_methods(methods, method_args, bool(endpoints))
    budget_values = resolve_budgets(budgets)
    if endpoints and budget_values:
        raise UsageError("--budgets needs managed servers (the budget is set when the server starts); omit --endpoint")
    served = check_endpoints(endpoints)  # before the sweep directory is made

    from rich.console import Console

    from bench.display import make_display
    from bench.runner import BenchSpec
    from bench.sweep import Servers, plan_points, run_sweep, sweep_dir_for

    spec = BenchSpec(
        tasks=tasks, modes=modes, num_samples=samples, context_tokens=context_tokens, num_turns=turns,
        seed=seed, data=data, history=history, max_turns=max_turns or None, chat_template=chat_template,
        max_seq_len=max_seq_len or None, prompts=prompts, gold_likelihood=gold_likelihood,
    )
    check_data(spec)  # a bad --data fails before the model is even prepared
    served = served or managed_model(model)  # so does a bad --model, before anything is created
    check_sizes(spec, served, device=device, max_total_tokens=max_total_tokens)  # and sizes that cannot work
    points = plan_points(kv_methods, budget_values)
    servers = Servers(model=model, endpoints=endpoints, device=device, max_total_tokens=max_total_tokens,
                      chat_template=chat_template)
    sweep_dir = sweep_dir_for(out, name, spec, points, servers)
    display = make_display()
    display.message(f"sweep directory: {sweep_dir} ({len(points)} points)")
    header = {"argv": sys.argv, "versions": versions(), "sweep_dir": str(sweep_dir), "request_timeout": request_timeout}
    started = time.monotonic()
    # SGLang's frontend sends requests with urllib and no timeout: the socket default is the only knob.
    previous_timeout = socket.getdefaulttimeout()
    if request_timeout:
        socket.setdefaulttimeout(request_timeout)
    try:
        point_dirs = run_sweep(spec, points, servers, sweep_dir, display, header, parallel=parallel)
    finally:
        socket.setdefaulttimeout(previous_timeout)

    from results.reader import all_records
    from results.summary import results_table, summarize

    records = all_records(point_dirs)
    console = Console(width=None if sys.stdout.isatty() else 160)  # pipes and logs get the whole table
    console.print(results_table(summarize(records)))
    figures = _figures(records, sweep_dir / "report")
    console.print(f"wall time {time.monotonic() - started:.1f}s; sweep directory: {sweep_dir}"
                  + (f"; figures: {figures}" if figures else ""), markup=False, highlight=False)


def _figures(records, folder: Path) -> Path | None:
    """The report's figures of the sweep (as `cli.py report` draws them), so a run shows its per-turn
    curves without another command; None when there was nothing to draw."""
    from results.plots import write_plots
    from results.report import build_report

    return folder if write_plots(build_report(records), folder, note=lambda text: None) else None
