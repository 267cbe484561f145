"""`python cli.py data ...`: list SCBench configs, generate synthetic sets, show one sample."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors

app = typer.Typer(help="SCBench data: list configs, generate synthetic sets, show a sample.", no_args_is_help=True)


@app.command("list")
def list_configs() -> None:
    """Every task's config: task, category, whether an offline generator exists (SCBench's 12, and
    any task a module in SCBENCH_PLUGINS adds)."""
    with one_line_errors():
        from programs.registry import all_tasks

        for task in all_tasks():
            generator = "generator" if task.generator is not None else "-"
            typer.echo(f"{task.config:32} {task.name:22} {task.category:20} {generator}")


@app.command()
def generate(
    task: Annotated[str, typer.Argument(help="A task with an offline generator (see `data list`).")],
    out: Annotated[Path, typer.Option(help="JSONL file to write (the config's row schema on the hub).")],
    samples: Annotated[int, typer.Option(min=1)] = 3,
    context_tokens: Annotated[int, typer.Option(min=64)] = 2000,
    turns: Annotated[int, typer.Option(min=1)] = 4,
    seed: int = 0,
    tokenizer: Annotated[Optional[str], typer.Option(help="Tokenizer that measures lengths (HF id or path). Default: the embedded model's.")] = None,
) -> None:
    """Generate a synthetic set to JSONL, sized with the served model's tokenizer, in the config's hub
    row schema (e.g. scbench_vt rows hold `index`, `input`, `length`; no `id`)."""
    with one_line_errors():
        from data.generators import token_counter
        from errors import UsageError
        from programs.registry import all_tasks, get_task, unknown
        from results import files
        from runtime.backend import load_tokenizer
        from runtime.model import embedded_model_path

        spec = get_task(task)
        if spec.generator is None:
            raise unknown("generator", task, [t.name for t in all_tasks() if t.generator is not None])
        tok = load_tokenizer(tokenizer or str(embedded_model_path()))
        try:
            generated = spec.generator(token_counter(tok), num_samples=samples, context_tokens=context_tokens, num_turns=turns, seed=seed)
            rows = [spec.hub_schema.row(s, i) for i, s in enumerate(generated)]
        except ValueError as err:
            raise UsageError(str(err)) from err
        out.parent.mkdir(parents=True, exist_ok=True)
        files.write_jsonl_atomic(out, rows)
        typer.echo(f"wrote {len(rows)} {spec.name} sessions to {out}")


@app.command()
def show(
    config: Annotated[str, typer.Argument(help="SCBench config or task name.")],
    data: Annotated[str, typer.Option(help="A JSONL/parquet file, a hub-layout folder, 'hub', or 'fixtures'.")] = "fixtures",
    index: Annotated[int, typer.Option(min=0, help="Which row.")] = 0,
    context_chars: Annotated[int, typer.Option(min=0, help="How much of the context to print.")] = 600,
) -> None:
    """Print one sample: its context (abridged), then each turn's question and gold answer. The row's
    text is shown as written (control characters spelled out, no markup read); rows the loader
    rejects are named on stderr."""
    with one_line_errors():
        from rich.console import Console
        from rich.panel import Panel
        from rich.text import Text

        from data.loader import load_samples
        from errors import UsageError
        from programs import get_task
        from runtime.terminal_text import inert, one_line

        task = get_task(config)
        skipped: list[str] = []
        samples = load_samples(task.config, None if data == "hub" else data, limit=index + 1,
                               on_skip=lambda ref, why: skipped.append(f"{ref}: {why}"))
        if len(samples) <= index:
            rejected = f", {len(skipped)} rejected (first: {skipped[0]})" if skipped else ""
            raise UsageError(
                f"--data {data}: {task.config} has {len(samples)} usable rows{rejected}; --index {index} is out of range"
            )
        err = Console(stderr=True, highlight=False, soft_wrap=True)
        for line in skipped:
            err.print(inert(f"skipped {line}"))
        sample = samples[index]
        console = Console(highlight=False)
        context = inert(sample.context if len(sample.context) <= context_chars else sample.context[:context_chars])
        if len(sample.context) > context_chars:
            context.append(f" ... [{len(sample.context)} chars]")
        console.print(Panel(
            context,
            title=Text(f"{task.config} #{index} id=") + inert(one_line(sample.id)),
            subtitle=inert(one_line(json.dumps(sample.metadata, default=str)[:200])),
        ))
        for i, turn in enumerate(sample.turns, 1):
            console.print(Text(f"turn {i} ", style="bold") + inert(turn.question.strip()[:500]))
            gold = json.dumps(turn.answer, ensure_ascii=False)[:300] + "  " + json.dumps(turn.extras, ensure_ascii=False)[:200]
            console.print(Text("  ") + Text("gold", style="green") + Text(" ") + inert(gold))
