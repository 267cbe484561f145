"""The shape every SCBench task shares: a task spec (templates, budgets, scorer) and the two programs.

Both programs put the shared context first, so RadixAttention holds its KV once and every later
turn / request reuses it. Their text is built by `programs.prompts` exactly as SCBench's runner
builds its prompts (the model's own chat template included); the programs append those pieces:

- multi-turn: one conversation. The first piece (instruction, context, question 1) is prefilled
  with question 1 (as in SCBench, where a KV method compresses the context once, query-aware);
  each turn forks once and answers in the fork, and the main stream takes the next piece, which
  holds the gold answer (SCBench's default) or the model's own answer, then the next question.
- multi-request: the context piece is committed to the server alone (so a KV method compresses it
  query-agnostic, as in SCBench), then each question is an independent request over it (forks).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import sglang as sgl

from data.sample import Sample, Turn
from programs.prompts import FIXED, MULTI_REQUEST, MULTI_TURN, OFFICIAL, PROMPT_STYLES, answer_text, session_prompts, turn_fields

if TYPE_CHECKING:
    from programs.metrics.context import ScoringContext
    from runtime.chat_template import ChatFormat

MODES = (MULTI_TURN, MULTI_REQUEST)
HISTORIES = ("gold", "model")
__all__ = ["HISTORIES", "MODES", "PROGRAMS", "PROMPT_STYLES", "TaskSpec", "answer_text", "multi_request", "multi_turn"]


@dataclass(frozen=True)
class TaskSpec:
    """One SCBench task: its prompt templates, how long answers may be, how a turn is scored.

    The templates are SCBench's own (scbench/eval_utils.py), by the names used there:
    `context_template` is `multiturn_templates_scdq` (instruction + `{context}`; for the tasks whose
    entry is a pair, its first element); `question_template` is
    `multiturn_follow_up_templates_in_chat_tempate` (a question as the chat follow-ups and the
    multi-request questions ask it); the first turn is `context_template` + blank line +
    `first_question_template` (default: `question_template`), which is `multiturn_templates`;
    `follow_up_template` is `multiturn_follow_up_templates` (plain-text follow-ups; default:
    `"{pre_ans}\\n\\n"` + `question_template`). `chat_answer_lead` is the text SCBench starts the
    assistant's reply with in chat follow-ups (En.Sum: "This paper").

    `max_new_tokens` is an int, or a mapping from a turn's `task` field to an int (the Mix tasks).
    Scores come from `programs.metrics`.
    """

    name: str
    config: str
    category: str
    context_template: str
    max_new_tokens: int | Mapping[str, int]
    question_template: str = "{input}"
    first_question_template: str | None = None
    follow_up_template: str | None = None
    chat_answer_lead: str = ""

    def context_fields(self, sample: Sample, mode: str, style: str) -> dict[str, Any]:
        """Fields of `context_template` besides `context` (tasks override)."""
        return {}

    def question_fields(self, sample: Sample, index: int, *, chat_follow_up: bool, style: str) -> dict[str, Any]:
        """Fields of the question templates for turn `index` (tasks override)."""
        return turn_fields(sample.turns[index])

    def plain_follow_up_template(self, style: str) -> str:
        """The plain-text follow-up: SCBench's own, or the fixed style's uniform one."""
        uniform = "{pre_ans}\n\n" + self.question_template
        return (self.follow_up_template or uniform) if style == OFFICIAL else uniform

    # The prompts' plain-text parts without quirks, for scripts that rebuild prompts on their own
    # (the benchmarks): instruction + context, the blank line, a question.
    separator = "\n\n"

    def shared_prefix(self, sample: Sample) -> str:
        return self.context_template.format(context=sample.context, **self.context_fields(sample, MULTI_TURN, FIXED))

    def query(self, turn: Turn, first: bool = False) -> str:
        template = self.first_question_template if first and self.first_question_template else self.question_template
        return template.format(**self.question_fields(Sample(id="", context="", turns=(turn,)), 0, chat_follow_up=False, style=FIXED))

    def max_tokens(self, turn: Turn) -> int:
        if isinstance(self.max_new_tokens, Mapping):
            sub_task = turn.extras.get("task")
            if sub_task not in self.max_new_tokens:
                raise ValueError(f"{self.name}: turn has task {sub_task!r}, expected one of {list(self.max_new_tokens)}")
            return self.max_new_tokens[sub_task]
        return self.max_new_tokens

    def score(self, prediction: str, turn: Turn, sample: Sample, mode: str = "official", context: ScoringContext | None = None) -> float:
        """`context`: the run's `programs.metrics.ScoringContext` (None: the sample is the run)."""
        from programs.metrics import score_turn

        return score_turn(self.name, prediction, turn, sample, mode, context)


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
):
    """Turn 1: instruction + context + question 1. Turn i>1: previous answer, then question i.

    `prompts`: "official" or "fixed" (`programs.prompts`); `first_prompt` replaces the first piece
    (the runner passes it cut to `--max-seq-len`).
    """
    text = session_prompts(task, sample, resolve_chat(s, chat), prompts, max_turns)
    turns = text.sample.turns
    sent = text.first_turn() if first_prompt is None else first_prompt
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
    return results


@sgl.function
def multi_request(
    s, task: TaskSpec, sample: Sample, chat: bool | ChatFormat | None = True, max_turns: int | None = None,
    prompts: str = OFFICIAL, first_prompt: str | None = None,
):
    """The committed context, then each question as an independent request (a fork) over it."""
    text = session_prompts(task, sample, resolve_chat(s, chat), prompts, max_turns)
    turns = text.sample.turns
    context = text.context() if first_prompt is None else first_prompt
    s += context
    commit_shared_prefix(s)
    forks = s.fork(len(turns))
    questions = [text.question(i) for i in range(len(turns))]
    for fork, turn, question in zip(forks, turns, questions):
        fork += question
        _answer(fork, task, turn)
    return [{**_turn_result(fork, i), SENT: (context, context + questions[i])} for i, fork in enumerate(forks)]


PROGRAMS = {MULTI_TURN: multi_turn, MULTI_REQUEST: multi_request}
