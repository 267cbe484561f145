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
    """The 12 SCBench configs: task, category, whether an offline generator exists."""
    with one_line_errors():
        from data.generators import GENERATORS
        from data.loader import CONFIGS
        from programs import get_task

        for config in CONFIGS:
            task = get_task(config)
            generator = "generator" if task.name in GENERATORS else "-"
            typer.echo(f"{config:32} {task.name:22} {task.category:20} {generator}")


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
        from bench import rundir
        from data.generators import GENERATORS, token_counter
        from data.schema import hub_row
        from programs import get_task
        from programs.registry import unknown
        from runtime.backend import load_tokenizer
        from runtime.model import embedded_model_path

        spec = get_task(task)
        name = spec.name
        if name not in GENERATORS:
            raise unknown("generator", task, list(GENERATORS))
        tok = load_tokenizer(tokenizer or str(embedded_model_path()))
        try:
            generated = GENERATORS[name](token_counter(tok), num_samples=samples, context_tokens=context_tokens, num_turns=turns, seed=seed)
            rows = [hub_row(s, spec.config, i) for i, s in enumerate(generated)]
        except ValueError as err:
            from runtime.errors import UsageError

            raise UsageError(str(err)) from err
        out.parent.mkdir(parents=True, exist_ok=True)
        rundir.write_jsonl_atomic(out, rows)
        typer.echo(f"wrote {len(rows)} {name} sessions to {out}")


@app.command()
def show(
    config: Annotated[str, typer.Argument(help="SCBench config or task name.")],
    data: Annotated[str, typer.Option(help="A JSONL/parquet file, a hub-layout folder, 'hub', or 'fixtures'.")] = "fixtures",
    index: Annotated[int, typer.Option(min=0, help="Which row.")] = 0,
    context_chars: Annotated[int, typer.Option(min=0, help="How much of the context to print.")] = 600,
) -> None:
    """Print one sample: its context (abridged), then each turn's question and gold answer."""
    with one_line_errors():
        from rich.console import Console
        from rich.panel import Panel

        from data.loader import load_samples
        from programs import get_task
        from runtime.errors import UsageError

        task = get_task(config)
        samples = load_samples(task.config, None if data == "hub" else data, limit=index + 1)
        if len(samples) <= index:
            raise UsageError(f"{task.config} has {len(samples)} usable rows; --index {index} is out of range")
        sample = samples[index]
        console = Console()
        context = sample.context if len(sample.context) <= context_chars else sample.context[:context_chars] + f" ... [{len(sample.context)} chars]"
        console.print(Panel(context, title=f"{task.config} #{index} id={sample.id}", subtitle=json.dumps(sample.metadata, default=str)[:200]))
        for i, turn in enumerate(sample.turns, 1):
            console.print(f"[bold]turn {i}[/bold] {turn.question.strip()[:500]}")
            console.print(f"  [green]gold[/green] {json.dumps(turn.answer, ensure_ascii=False)[:300]}  {json.dumps(turn.extras, ensure_ascii=False)[:200]}")
