"""The two SGLang programs every SCBench task runs in (the `@sgl.function`s; tasks are `TaskSpec`s,
`programs.spec`).

Both programs put the shared context first, so RadixAttention holds its KV once and every later
turn / request reuses it. Their text is built by `programs.prompts` exactly as SCBench's runner
builds its prompts (the model's own chat template included); the programs append those pieces:

- multi-turn: one conversation. The first piece (instruction, context, question 1) is prefilled
  with question 1 (as in SCBench, where a KV method compresses the context once, query-aware;
  a method that scores the context by a pass over it, KVzip, has the context part committed and
  scored first, query-agnostic);
  each turn forks once and answers in the fork, and the main stream takes the next piece, which
  holds the gold answer (SCBench's default) or the model's own answer, then the next question.
- multi-request: the context piece is committed to the server alone (so a KV method compresses it
  query-agnostic, as in SCBench), then each question is an independent request over it (forks).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import sglang as sgl

from data.sample import Sample, Turn
from programs.prompts import MULTI_REQUEST, MULTI_TURN, OFFICIAL, session_prompts
from programs.spec import MODES, TaskSpec

if TYPE_CHECKING:
    from runtime.chat_template import ChatFormat

__all__ = ["MODES", "PROGRAMS", "SENT", "TaskSpec", "commit_shared_prefix", "multi_request", "multi_turn"]


def commit_shared_prefix(s) -> None:
    """Prefill the stream's text on the server now, so every later request finds it in the radix cache.

    SGLang 0.5.23's `fork()` checks for text to commit before it syncs, so without this the prefix is
    usually not committed and the forks' first prefills race (each recomputes the whole context).
    """
    s.sync()
    executor = s.stream_executor
    executor.backend.commit_lazy_operations(executor)


def resolve_chat(s, chat: bool | ChatFormat | None) -> ChatFormat | None:
    """The chat format the prompts use: `True` takes the backend's (which `runtime.backend.connect`
    sets from the model's tokenizer), a `ChatFormat` is used as it is, `False`/`None` means plain text."""
    if chat is True:
        found = getattr(s.stream_executor.backend, "chat_format", None)
        if found is None:
            raise ValueError("chat=True needs a backend from runtime.backend.connect (it carries the model's chat "
                             "template); pass chat=ChatFormat(tokenizer), or chat=False for plain text")
        return found
    return chat or None


# Each turn's result carries (text the server already held of the session, text sent) under this
# key, so a runner can tell whether the radix cache still had the session's context
# (`bench.runner.recomputed_tokens`); it is not part of the record.
SENT = "_sent"

# Called with (turn index, the turn's exact prompt text) once the turn has answered.
AfterTurn = Callable[[int, str], None]
# Called with the committed context piece's text before any question is sent: a method that scores
# the context by a pass over it (KVzip, `programs.context_scoring`) runs that pass there.
ScoreContext = Callable[[str], None]


def _turn_result(state, turn_index: int) -> dict[str, Any]:
    failure = state.error()  # a request the server rejected: its own error, not a missing "answer"
    if failure is not None:
        raise failure
    meta = state.get_meta_info("answer") or {}
    finish = meta.get("finish_reason")
    return {
        "turn": turn_index,
        "prediction": state["answer"],
        "prompt_tokens": meta.get("prompt_tokens"),
        "cached_tokens": meta.get("cached_tokens"),
        "completion_tokens": meta.get("completion_tokens"),
        "latency": meta.get("e2e_latency"),
        "finish_reason": finish.get("type") if isinstance(finish, dict) else finish,
        "request_id": meta.get("id"),
    }


def _answer(state, task: TaskSpec, turn: Turn) -> None:
    """The answer, greedy; the piece before it already opened the assistant's reply."""
    state += sgl.gen("answer", max_tokens=task.max_tokens(turn), temperature=0.0)


@sgl.function
def multi_turn(
    s, task: TaskSpec, sample: Sample, chat: bool | ChatFormat | None = True, history: str = "gold",
    max_turns: int | None = None, prompts: str = OFFICIAL, first_prompt: str | None = None,
    after_turn: AfterTurn | None = None, score_context: ScoreContext | None = None,
):
    """Turn 1: instruction + context + question 1. Turn i>1: previous answer, then question i.

    `prompts`: "official" or "fixed" (`programs.prompts`); `first_prompt` replaces the first piece
    (the runner passes it cut to `--max-seq-len`); `after_turn(i, prompt)` runs once turn i has
    answered, before the next turn is sent (the runner measures the gold answer's likelihood there).
    `score_context(context)`: the first piece's context part is committed alone and scored before
    question 1 follows (a query-agnostic method decides on the context alone).
    """
    text = session_prompts(task, sample, resolve_chat(s, chat), prompts, max_turns)
    turns = text.sample.turns
    sent = text.first_turn() if first_prompt is None else first_prompt
    if score_context is not None:
        # The first turn is the context piece, then question 1 (`rest`); a cut first prompt keeps its end.
        full, context = text.first_turn(), text.first_turn_context()
        rest = full[len(context):]
        if not full.startswith(context) or not sent.endswith(rest):
            raise ValueError("the first turn does not end with question 1 after the context; cannot score the context alone")
        context = sent[: len(sent) - len(rest)]
        s += context
        commit_shared_prefix(s)
        score_context(context)
        s += sent[len(context):]
    else:
        s += sent
    results: list[dict[str, Any]] = []
    for i, turn in enumerate(turns):
        held = ""  # what the server holds of this session before the turn: the previous turn's prompt
        if i > 0:
            previous = turns[i - 1].answer if history == "gold" else results[-1]["prediction"]
            piece = text.follow_up(i, previous)
            s += piece
            held, sent = sent, sent + piece
        fork = s.fork(1)[0]
        _answer(fork, task, turn)
        results.append({**_turn_result(fork, i), SENT: (held, sent)})
        if after_turn is not None:
            after_turn(i, sent)
    return results


@sgl.function
def multi_request(
    s, task: TaskSpec, sample: Sample, chat: bool | ChatFormat | None = True, max_turns: int | None = None,
    prompts: str = OFFICIAL, first_prompt: str | None = None, after_turn: AfterTurn | None = None,
    score_context: ScoreContext | None = None,
):
    """The committed context, then each question as an independent request (a fork) over it;
    `after_turn(i, prompt)` runs for each question once all have answered; `score_context(context)`
    once the context is committed, before the questions."""
    text = session_prompts(task, sample, resolve_chat(s, chat), prompts, max_turns)
    turns = text.sample.turns
    context = text.context() if first_prompt is None else first_prompt
    s += context
    commit_shared_prefix(s)
    if score_context is not None:
        score_context(context)
    forks = s.fork(len(turns))
    questions = [text.question(i) for i in range(len(turns))]
    for fork, turn, question in zip(forks, turns, questions):
        fork += question
        _answer(fork, task, turn)
    results = [{**_turn_result(fork, i), SENT: (context, context + questions[i])} for i, fork in enumerate(forks)]
    if after_turn is not None:
        for i, question in enumerate(questions):
            after_turn(i, context + question)
    return results


PROGRAMS = {MULTI_TURN: multi_turn, MULTI_REQUEST: multi_request}
