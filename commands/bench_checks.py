"""`cli.py bench`'s inputs checked against the model and the machine before a server starts or a
folder is written: each check raises `UsageError` with one line naming the accepted range.

Without them a size that cannot work surfaced after the server had started (a traceback from a
generator, SGLang rejecting every request), or grew memory until the machine ran out.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass
from pathlib import Path

from errors import UsageError

# A sweep folder name: ASCII letters, digits and . _ + - (not first: . or -), at most 128 characters,
# so it is one plain folder everywhere and prints as itself (no newline, escape or control character).
NAME_PATTERN = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]{0,127}")
NAME_RULE = "1-128 of A-Z a-z 0-9 . _ + -, not starting with . or -"

MAX_PARALLEL = 1024  # sessions in flight: one thread and one open request each
MAX_REQUEST_TIMEOUT = 1e6  # seconds (11.6 days); the socket layer refuses much larger values
MAX_SAMPLES = 1_000_000
# Memory a generated context takes per token while a point runs (its text, its row in contexts/,
# the tokenizer's work while it is sized), with room to spare.
GENERATED_BYTES_PER_TOKEN = 32
# Share of the available memory that generated data or the managed server's KV pool may take.
MEMORY_SHARE = 0.5
# KV pool bound when its memory cannot be known here (a GPU, a model whose config is not local).
MAX_TOTAL_TOKENS_UNKNOWN = 1 << 24
_DTYPE_BYTES = {"float32": 4, "float": 4, "bfloat16": 2, "float16": 2, "half": 2}


def check_name(name: str | None) -> None:
    if name is not None and not NAME_PATTERN.fullmatch(name):
        raise UsageError(f"--name {ascii(name)}: expected {NAME_RULE}")


def check_counts(*, parallel: int, samples: int | None, request_timeout: float | None) -> None:
    if parallel > MAX_PARALLEL:
        raise UsageError(f"--parallel {parallel}: expected 1 to {MAX_PARALLEL}")
    if samples is not None and samples > MAX_SAMPLES:
        raise UsageError(f"--samples {samples}: expected 1 to {MAX_SAMPLES}")
    if request_timeout is not None and not (math.isfinite(request_timeout) and request_timeout <= MAX_REQUEST_TIMEOUT):
        raise UsageError(f"--request-timeout {request_timeout}: expected 0.001 to {MAX_REQUEST_TIMEOUT:.0f} seconds")


def check_unique(values: tuple[str, ...], option: str) -> None:
    """After names are resolved (an HF config name and its task name are the same task)."""
    repeated = sorted({v for v in values if values.count(v) > 1})
    if repeated:
        raise UsageError(f"{option} names {', '.join(repeated)} more than once; give each once")


@dataclass(frozen=True)
class ModelLimits:
    """What bounds a run on the served model; None where it is not known here."""

    context_length: int | None = None
    kv_bytes_per_token: int | None = None


def local_model_limits(model_path: str) -> ModelLimits:
    """From a local HF checkpoint's config.json (an HF id not on disk: nothing known)."""
    try:
        config = json.loads((Path(model_path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return ModelLimits()
    if not isinstance(config, dict):
        return ModelLimits()
    config = config.get("text_config", config) if isinstance(config.get("text_config"), dict) else config
    context = config.get("max_position_embeddings")
    context = context if isinstance(context, int) and context > 0 else None
    layers, heads = config.get("num_hidden_layers"), config.get("num_key_value_heads", config.get("num_attention_heads"))
    head_dim = config.get("head_dim")
    if not isinstance(head_dim, int) and isinstance(config.get("hidden_size"), int) and isinstance(config.get("num_attention_heads"), int):
        head_dim = config["hidden_size"] // config["num_attention_heads"]
    dtype = _DTYPE_BYTES.get(str(config.get("torch_dtype") or config.get("dtype") or "bfloat16"), 2)
    sizes = (layers, heads, head_dim)
    kv = 2 * layers * heads * head_dim * dtype if all(isinstance(v, int) and v > 0 for v in sizes) else None
    return ModelLimits(context, kv)


def available_memory() -> int | None:
    """Bytes of memory available to new allocations (Linux MemAvailable), None when unknown."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None


def check_kv_pool(max_total_tokens: int, limits: ModelLimits, device: str, memory: int | None) -> None:
    """The managed server's KV pool must fit the machine: on CPU, its bytes within a share of the
    available memory; elsewhere (or not knowing the model's KV size), a fixed bound."""
    upper = MAX_TOTAL_TOKENS_UNKNOWN
    if device == "cpu" and limits.kv_bytes_per_token and memory:
        upper = max(1024, int(memory * MEMORY_SHARE) // limits.kv_bytes_per_token)
    if max_total_tokens > upper:
        why = (f"{limits.kv_bytes_per_token} KV bytes per token within half of {memory >> 20} MiB available"
               if upper != MAX_TOTAL_TOKENS_UNKNOWN else "the largest KV pool accepted")
        raise UsageError(f"--max-total-tokens {max_total_tokens}: expected 1024 to {upper} ({why})")


def check_generated_sizes(*, context_tokens: int, samples: int, generated_tasks: int, limits: ModelLimits,
                          memory: int | None, max_total_tokens: int | None) -> None:
    """Generated contexts fit the model's window, the managed server's KV pool and the memory
    their rows take (`samples` x `generated_tasks` contexts of `context_tokens` each)."""
    if not generated_tasks:
        return
    bounds = []
    if limits.context_length:
        bounds.append((limits.context_length, "the model's context length"))
    if max_total_tokens:
        bounds.append((max_total_tokens, "--max-total-tokens, the server's KV pool"))
    if bounds:
        upper, what = min(bounds)
        if context_tokens > upper:
            raise UsageError(f"--context-tokens {context_tokens}: expected 64 to {upper} ({what})")
    if memory:
        total_tokens = context_tokens * samples * generated_tasks
        if total_tokens * GENERATED_BYTES_PER_TOKEN > memory * MEMORY_SHARE:
            most = max(1, int(memory * MEMORY_SHARE) // (GENERATED_BYTES_PER_TOKEN * context_tokens * generated_tasks))
            raise UsageError(
                f"--samples {samples} x --context-tokens {context_tokens} x {generated_tasks} tasks do not fit half "
                f"of the {memory >> 20} MiB available; expected --samples 1 to {most} at this size"
            )


def check_prompt_budgets(tasks, modes: tuple[str, ...], max_seq_len: int | None, context_length: int | None,
                         turns: int) -> None:
    """`--max-seq-len` must leave the first prompt room after the answers (SCBench's
    `max_input_length`, `data.truncation.prompt_budget`): at 0 or 1 tokens the middle cut keeps
    nothing and every session of the task would fail the same way."""
    from data.truncation import effective_max_seq_len, prompt_budget

    effective = effective_max_seq_len(max_seq_len, context_length)
    if effective is None:
        return
    for task in tasks:
        for mode in modes:
            try:
                budget = prompt_budget(effective, task.max_new_tokens, turns, mode)
            except ValueError as err:
                raise UsageError(f"--max-seq-len {effective}: {err}") from None
            if 0 <= budget < 2:
                raise UsageError(
                    f"--max-seq-len {effective} leaves {budget} tokens for the {task.name} prompt in {mode} mode "
                    f"(its answers take the rest over {turns} turns); give a larger --max-seq-len, or 0 for no cut"
                )


def check_generators(tasks, *, count_tokens, context_tokens: int, turns: int, seed: int) -> None:
    """Each generator makes one session at these sizes (a context too small for the turns is its
    ValueError), so a size that cannot work is refused before a server starts."""
    for task in tasks:
        try:
            task.generator(count_tokens, num_samples=1, context_tokens=context_tokens, num_turns=turns, seed=seed)
        except ValueError as err:
            raise UsageError(f"{task.name}: {err} (--context-tokens {context_tokens}, --turns {turns})") from None


@dataclass(frozen=True)
class Served:
    """What the run will be served by, as far as it is known before anything starts."""

    tokenizer_path: str
    limits: ModelLimits
    managed: bool


def check_endpoints(endpoints: list[str]) -> Served | None:
    """Each `--endpoint` is a well-formed URL of a healthy SGLang server (None without endpoints).
    A malformed URL, or a server that is not SGLang, is a UsageError; a server that does not
    answer is a RuntimeFailure."""
    from errors import RuntimeFailure
    from runtime.backend import served_context_length
    from runtime.server import check_is_sglang, is_healthy, parse_endpoint

    if not endpoints:
        return None
    for url in endpoints:
        parse_endpoint(url)
    if len(set(endpoints)) != len(endpoints):
        raise UsageError("--endpoint names a server twice")
    for url in endpoints:
        if not is_healthy(url, timeout=10):
            raise RuntimeFailure(f"no healthy SGLang server at {url} (GET /health failed)")
    infos = [check_is_sglang(url) for url in endpoints]
    lengths = [n for n in (served_context_length(url) for url in endpoints) if n]
    info = infos[0]
    return Served(info.get("tokenizer_path") or info["model_path"], ModelLimits(min(lengths) if lengths else None), False)


def managed_model(model: str) -> Served:
    from runtime.model import resolve_model

    path = resolve_model(model)  # a bad --model fails here, before anything is created
    return Served(path, local_model_limits(path), True)


def check_sizes(spec, served: Served, *, device: str, max_total_tokens: int) -> None:
    """Every size of the run against the model and the machine (see the module's docstring)."""
    from bench.runner import GENERATED_SAMPLES
    from programs.registry import get_task

    memory = available_memory()
    if served.managed:
        check_kv_pool(max_total_tokens, served.limits, device, memory)
    tasks = [get_task(name) for name in spec.tasks]
    generated = [t for t in tasks if spec.data is None and t.generator is not None]
    check_generated_sizes(
        context_tokens=spec.context_tokens, samples=spec.num_samples or GENERATED_SAMPLES,
        generated_tasks=len(generated), limits=served.limits, memory=memory,
        max_total_tokens=max_total_tokens if served.managed else None,
    )
    if not generated:
        return  # rows of --data: their turns are known once they are read
    turns = min(spec.num_turns, spec.max_turns) if spec.max_turns else spec.num_turns
    check_prompt_budgets(generated, spec.modes, spec.max_seq_len, served.limits.context_length, turns)
    from data.generators import token_counter
    from runtime.backend import load_tokenizer

    check_generators(generated, count_tokens=token_counter(load_tokenizer(served.tokenizer_path)),
                     context_tokens=spec.context_tokens, turns=spec.num_turns, seed=spec.seed)
