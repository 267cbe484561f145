"""`python cli.py calibrate duoattention`: a DuoAttention head pattern for any model.

The pattern (duo-attention's layout: full_attention_heads.tsv + config.json) is what
`--method-arg duoattention.pattern=DIR` reads; see kvmethods/duoattention_calibration.py for what
the calibration measures and how it relates to DuoAttention's trained gates.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from commands.common import one_line_errors

EMBEDDED = "embedded:smollm2-135m-instruct"  # runtime.model.EMBEDDED_MODEL

app = typer.Typer(help="Derive a KV method's per-model settings from a short synthetic set.", no_args_is_help=True)


@app.command("duoattention")
def duoattention(
    model: Annotated[str, typer.Option(help="HF model id or local path.")] = EMBEDDED,
    out: Annotated[Optional[Path], typer.Option(help="Pattern folder (default: patterns/duoattention/<model name>).")] = None,
    samples: Annotated[int, typer.Option(min=1, help="Synthetic passkey samples.")] = 4,
    context_tokens: Annotated[int, typer.Option(min=64, help="Tokens per sample.")] = 1024,
    passkeys: Annotated[int, typer.Option(min=1, help="Passkeys hidden per sample.")] = 4,
    sink: Annotated[int, typer.Option(min=0, help="Sink keys a streaming head keeps.")] = 64,
    recent: Annotated[int, typer.Option(min=1, help="Recent keys a streaming head keeps.")] = 256,
    seed: Annotated[int, typer.Option(help="Seed of the synthetic set.")] = 0,
) -> None:
    """Score each KV head by the attention its passkey answers give to keys outside the streaming
    window, and write the pattern (deterministic for a seed)."""
    with one_line_errors():
        from errors import UsageError
        from kvmethods.duoattention_calibration import CalibrationSettings, calibrate, write_pattern
        from runtime.model import resolve_model

        path = resolve_model(model)
        if context_tokens <= sink + recent + 32:
            raise UsageError(f"--context-tokens {context_tokens} must exceed --sink + --recent + 32 ({sink + recent + 32})")
        settings = CalibrationSettings(samples=samples, context_tokens=context_tokens, passkeys=passkeys,
                                       sink=sink, recent=recent, seed=seed)
        folder = out or Path("patterns") / "duoattention" / Path(path.rstrip("/")).name
        scores = calibrate(path, settings, progress=lambda i, n: typer.echo(f"sample {i}/{n}", err=True))
        write_pattern(folder, scores, model, settings)
        typer.echo(f"{folder}: {scores.shape[0]} layers x {scores.shape[1]} KV heads, mean score {float(scores.mean()):.3f}")
        typer.echo(f"use it: --methods duoattention --method-arg duoattention.pattern={folder.resolve()}")
