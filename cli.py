"""SharedContextBench on SGLang: `python cli.py --help`.

Thin root: commands live in `commands/`, and nothing heavy (torch, SGLang) is imported until a
command runs.
"""

from __future__ import annotations

import typer

from commands import calibrate, data
from commands.bench import bench
from commands.report import compare, report, rescore
from commands.tui import tui

app = typer.Typer(
    help="SharedContextBench (SCBench) on the SGLang runtime.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
app.command()(bench)
app.add_typer(data.app, name="data")
app.add_typer(calibrate.app, name="calibrate")
app.command()(report)
app.command()(rescore)
app.command()(compare)
app.command()(tui)


@app.command()
def version() -> None:
    """Print the versions of this project and the runtime it uses."""
    from runtime.versions import versions

    for name, value in versions().items():
        typer.echo(f"{name} {value}")


if __name__ == "__main__":
    app()
