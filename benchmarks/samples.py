"""The benchmarks' sessions: generated Retr.KV samples, and the texts a session sends."""

from __future__ import annotations

from typing import Any


def kv_samples(tokenizer, *, context_tokens: int, turns: int, samples: int = 1, seed: int = 0):
    """Retr.KV sessions from the offline generator, sized with `tokenizer`."""
    from data.generators import generate_kv, token_counter

    return generate_kv(token_counter(tokenizer), num_samples=samples, context_tokens=context_tokens,
                       num_turns=turns, seed=seed)


def reconstruct_prompts(tokenizer, task, sample, mode: str, max_turns: int | None = None,
                        style: str = "official") -> dict[str, Any]:
    """The texts a session sends, assembled from its prompt pieces (`programs.prompts`, which
    tests/test_prompt_parity.py checks against SCBench's own prompt code), with the gold history:
    {"context": the committed shared prefix (multi-request) or None, "prompts": one text per
    answering request}."""
    from programs.prompts import session_prompts
    from runtime.chat_template import chat_format

    chat = chat_format(tokenizer) if getattr(tokenizer, "chat_template", None) else None
    pieces = session_prompts(task, sample, chat, style, max_turns).pieces(mode)
    if mode == "multi-request":
        return {"context": pieces[0], "prompts": [pieces[0] + question for question in pieces[1:]]}
    return {"context": None, "prompts": ["".join(pieces[: i + 1]) for i in range(len(pieces))]}
