"""The shape every SCBench task shares: a task spec (prompts, budgets, scorer) and the two programs.

Both programs put the shared context first, so RadixAttention holds its KV once and every later
turn / request reuses it:

- multi-turn: one conversation; each turn forks once, answers in the fork, and the main stream
  takes the gold answer (SCBench's default) or the model's own answer as the assistant message.
  The first prefill holds context + question 1 (as in SCBench, where a KV method compresses the
  context once, query-aware), and every later turn reuses it.
- multi-request: the context is committed to the server alone (so a KV method compresses it
  query-agnostic, as in SCBench), then each question is an independent request over it (forks).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import sglang as sgl

from data.sample import Sample, Turn

MODES = ("multi-turn", "multi-request")
HISTORIES = ("gold", "model")


@dataclass(frozen=True)
class TaskSpec:
    """One SCBench task: how its prompts read, how long answers may be, how a turn is scored.

    `instruction` wraps the shared context (it must contain `{context}`; `prefix_fields(sample)` may
    add fields). `query_template` renders a turn's question from `input`, the turn's extras and
    `query_fields(turn)`; `first_query_template`, when set, renders the first multi-turn question
    (whose lead-in the instruction already holds). `max_new_tokens` is an int, or a mapping from a
    turn's `task` field to an int (the Mix tasks). Scores come from `programs.metrics`.
    """

    name: str
    config: str
    category: str
    instruction: str
    max_new_tokens: int | Mapping[str, int]
    query_template: str = "{input}"
    first_query_template: str | None = None
    prefix_fields: Callable[[Sample], dict[str, Any]] | None = None
    query_fields: Callable[[Turn], dict[str, Any]] | None = None
    # Text between the shared context and the question inside the first user message.
    separator: str = "\n\n"

    def shared_prefix(self, sample: Sample) -> str:
        extra = self.prefix_fields(sample) if self.prefix_fields else {}
        return self.instruction.format(context=sample.context, **extra)

    def query(self, turn: Turn, first: bool = False) -> str:
        template = self.first_query_template if first and self.first_query_template else self.query_template
        extra = self.query_fields(turn) if self.query_fields else {}
        return template.format(input=turn.question, **turn.extras, **extra)

    def max_tokens(self, turn: Turn) -> int:
        if isinstance(self.max_new_tokens, Mapping):
            sub_task = turn.extras.get("task")
            if sub_task not in self.max_new_tokens:
                raise ValueError(f"{self.name}: turn has task {sub_task!r}, expected one of {list(self.max_new_tokens)}")
            return self.max_new_tokens[sub_task]
        return self.max_new_tokens

    def score(self, prediction: str, turn: Turn, sample: Sample, mode: str = "official") -> float:
        from programs.metrics import score_turn

        return score_turn(self.name, prediction, turn, sample, mode)


def answer_text(answer: Any) -> str:
    """A gold answer as it enters the conversation history (lists are comma-joined)."""
    if isinstance(answer, (list, tuple)):
        return ", ".join(str(a) for a in answer)
    return str(answer)


def commit_shared_prefix(s) -> None:
    """Prefill the stream's text on the server now, so every later request finds it in the radix cache.

    SGLang 0.5.23's `fork()` checks for text to commit before it syncs, so without this the prefix is
    usually not committed and the forks' first prefills race (each recomputes the whole context).
    """
    s.sync()
    executor = s.stream_executor
    executor.backend.commit_lazy_operations(executor)


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


def _open_question(s, chat: bool) -> None:
    if chat:
        s += sgl.user_begin()


def _close_question(s, chat: bool) -> None:
    if chat:
        s += sgl.user_end()


def _generate(state, task: TaskSpec, turn: Turn, chat: bool) -> None:
    """The answer, greedy, in the assistant role when a chat template is used."""
    if chat:
        state += sgl.assistant_begin()
    state += sgl.gen("answer", max_tokens=task.max_tokens(turn), temperature=0.0)


@sgl.function
def multi_turn(s, task: TaskSpec, sample: Sample, chat: bool = True, history: str = "gold", max_turns: int | None = None):
    """Turn 1: instruction + context + question 1. Turn i>1: previous answer, then question i."""
    turns = sample.turns[:max_turns]
    _open_question(s, chat)
    s += task.shared_prefix(sample)
    results = []
    for i, turn in enumerate(turns):
        if i == 0:
            s += task.separator
        else:
            _open_question(s, chat)
            if not chat:  # plain text: SCBench's "{previous answer}\n\n{question}"
                s += "\n\n"
        s += task.query(turn, first=i == 0)
        _close_question(s, chat)
        fork = s.fork(1)[0]
        _generate(fork, task, turn, chat)
        result = _turn_result(fork, i)
        results.append(result)
        previous = answer_text(turn.answer) if history == "gold" else result["prediction"]
        s += sgl.assistant(previous) if chat else previous
    return results


@sgl.function
def multi_request(s, task: TaskSpec, sample: Sample, chat: bool = True, max_turns: int | None = None):
    """The committed context, then each question as an independent request (a fork) over it."""
    turns = sample.turns[:max_turns]
    _open_question(s, chat)
    s += task.shared_prefix(sample)
    commit_shared_prefix(s)
    forks = s.fork(len(turns))
    for fork, turn in zip(forks, turns):
        fork += task.separator + task.query(turn)
        _close_question(fork, chat)
        _generate(fork, task, turn, chat)
    return [_turn_result(fork, i) for i, fork in enumerate(forks)]


PROGRAMS = {"multi-turn": multi_turn, "multi-request": multi_request}
