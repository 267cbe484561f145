"""The text every SCBench request sends, built as SCBench's own runner builds it.

SCBench (scbench/eval_utils.py at commit fb56c91) renders each prompt piece with the model's chat
template and feeds the pieces one after the other:

- multi-turn (`create_multiturn_prompt`): piece 0 is the first turn, one user message (instruction,
  context, question 1) rendered with the generation prompt. Piece i > 0 renders
  `[system "", assistant <answer i-1>, user <question i>]` with the generation prompt and removes
  the rendering of `[system ""]` + generation prompt: what remains closes the previous answer,
  asks question i and opens the next answer. Turn i sends pieces 0..i.
- multi-request (`create_scdq_prompt`): piece 0 renders `[user <context>SEP]` and keeps what comes
  before SEP (the context, inside an open user message); piece i > 0 renders
  `[system "", user SEP<question i>]` and keeps what follows SEP. Request i sends piece 0 + piece i.

Without a chat template the pieces are the templates' plain text. `SessionPrompts` builds the same
pieces; the programs append them as they are.

Styles: `official` (default) keeps the official runner's quirks, so prompts (and scores) compare
with SCBench's; `fixed` corrects each of them (see `OFFICIAL_QUIRKS`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from data.sample import Sample, Turn
    from programs.spec import TaskSpec
    from runtime.chat_template import ChatFormat

MULTI_TURN, MULTI_REQUEST = "multi-turn", "multi-request"
OFFICIAL, FIXED = "official", "fixed"
PROMPT_STYLES = (OFFICIAL, FIXED)

# What `fixed` corrects, one line each (the README and --help point here).
OFFICIAL_QUIRKS = (
    "multi-request prompts glue the question to the context with no separator (fixed: a blank line, "
    "committed with the context, so both modes share the prefix)",
    "En.Sum chat follow-ups start the assistant reply with 'This paper' (fixed: no lead-in)",
    "Math.Find chat follow-ups ask the last turn's 'What is X?' (fixed: each turn's own)",
    "Math.Find's multi-request context starts with turn 1's whole input (fixed: 'What is X?' as in multi-turn)",
    "En.MultiChoice plain-text follow-ups say 'The letter of the correct answer is' where every other "
    "prompt says 'The the correct answer is' (fixed: the same lead-in everywhere)",
    "Retr.MultiHop's gold history is a Python list \"['A', 'B']\" (fixed: 'A, B')",
    "a template that writes BOS, for a tokenizer that adds BOS too, gives two BOS tokens (fixed: one)",
)

_SEP = "[SEPSEPSEP]"  # SCBench's delimiter for cutting a rendered conversation
_EMPTY_SYSTEM = {"role": "system", "content": ""}
_BLANK_LINE = "\n\n"


def answer_text(answer: Any) -> str:
    """A gold answer as the fixed style writes it into the history (lists are comma-joined)."""
    if isinstance(answer, (list, tuple)):
        return ", ".join(str(a) for a in answer)
    return str(answer)


def history_text(answer: Any, style: str) -> str:
    """A previous answer as the next turn's history: SCBench writes `str(answer)`, so a list reads
    "['A', 'B']"; the fixed style joins its items."""
    return str(answer) if style == OFFICIAL else answer_text(answer)


def turn_fields(turn: Turn) -> dict[str, Any]:
    """The names SCBench's templates use for a turn's fields: `input` (also as `question`), the
    turn's extras, and `OPTION_A`..`OPTION_D` for multiple-choice options."""
    fields = {**turn.extras, "input": turn.question, "question": turn.question}
    options = turn.extras.get("options")
    if isinstance(options, (list, tuple)):
        fields.update({f"OPTION_{letter}": option for letter, option in zip("ABCD", options)})
    return fields


@dataclass(frozen=True)
class SessionPrompts:
    """The prompt pieces of one session (`sample` already cut to the turns it asks)."""

    task: TaskSpec
    sample: Sample
    chat: ChatFormat | None = None
    style: str = OFFICIAL

    # --- multi-turn -------------------------------------------------------------------------------

    def first_turn(self) -> str:
        """Turn 1: instruction, context and question 1 in one user message, then the answer opens."""
        task = self.task
        shared = task.context_template.format(context=self.sample.context, **task.context_fields(self.sample, MULTI_TURN, self.style))
        question = (task.first_question_template or task.question_template).format(**self._fields(0, chat_follow_up=False))
        text = shared + _BLANK_LINE + question
        if self.chat is not None:
            text = self.chat.render([{"role": "user", "content": text}])
        return self._one_bos(text)

    def first_turn_context(self) -> str:
        """The first turn's text before question 1 (instruction and context, inside the open user
        message): `first_turn()` starts with it. A query-agnostic method that scores the context by
        a pass over it (KVzip) has this part committed and scored before question 1 is sent."""
        task = self.task
        shared = task.context_template.format(context=self.sample.context, **task.context_fields(self.sample, MULTI_TURN, self.style))
        if self.chat is not None:
            shared = self.chat.render([{"role": "user", "content": shared + _SEP}]).split(_SEP)[0]
        return self._one_bos(shared)

    def follow_up(self, index: int, previous_answer: Any) -> str:
        """Turn `index` > 0: the previous answer (gold, or the model's) closes, question `index` follows."""
        answer = history_text(previous_answer, self.style)
        fields = self._fields(index, chat_follow_up=self.chat is not None)
        if self.chat is None:
            return self.task.plain_follow_up_template(self.style).format(pre_ans=answer, **fields)
        question = self.task.question_template.format(**fields)
        conversation = self.chat.render([_EMPTY_SYSTEM, {"role": "assistant", "content": answer}, {"role": "user", "content": question}])
        piece = conversation.replace(self.chat.render([_EMPTY_SYSTEM]), "")
        return piece + (self.task.chat_answer_lead if self.style == OFFICIAL else "")

    # --- multi-request ----------------------------------------------------------------------------

    def context(self) -> str:
        """The shared context, inside a user message left open (the committed prefix)."""
        task = self.task
        text = task.context_template.format(context=self.sample.context, **task.context_fields(self.sample, MULTI_REQUEST, self.style))
        if self.chat is not None:
            text = self.chat.render([{"role": "user", "content": text + _SEP}]).split(_SEP)[0]
        return self._one_bos(text) + (_BLANK_LINE if self.style == FIXED else "")

    def question(self, index: int) -> str:
        """Request `index`'s own text after the context: the question, then the answer opens."""
        text = self.task.question_template.format(**self._fields(index, chat_follow_up=False))
        if self.chat is None:
            return text
        return self.chat.render([_EMPTY_SYSTEM, {"role": "user", "content": _SEP + text}]).split(_SEP)[1]

    # --- both -------------------------------------------------------------------------------------

    def first(self, mode: str) -> str:
        """The piece every turn / request of `mode` starts with (what the official runner truncates)."""
        return self.first_turn() if mode == MULTI_TURN else self.context()

    def pieces(self, mode: str) -> list[str]:
        """Every piece of the session with the gold history: multi-turn turn i sends pieces[0..i];
        multi-request request i sends pieces[0] + pieces[i + 1]."""
        turns = self.sample.turns
        if mode == MULTI_TURN:
            return [self.first_turn()] + [self.follow_up(i, turns[i - 1].answer) for i in range(1, len(turns))]
        if mode == MULTI_REQUEST:
            return [self.context()] + [self.question(i) for i in range(len(turns))]
        raise ValueError(f"unknown mode {mode!r}; valid: {MULTI_TURN}, {MULTI_REQUEST}")

    def _fields(self, index: int, *, chat_follow_up: bool) -> dict[str, Any]:
        return self.task.question_fields(self.sample, index, chat_follow_up=chat_follow_up, style=self.style)

    def _one_bos(self, text: str) -> str:
        """The fixed style drops the template's BOS when the tokenizer adds one itself."""
        bos = self.chat.repeated_bos if (self.chat is not None and self.style == FIXED) else None
        return text[len(bos):] if bos and text.startswith(bos) else text


def session_prompts(
    task: TaskSpec, sample: Sample, chat: ChatFormat | None = None, style: str = OFFICIAL, max_turns: int | None = None
) -> SessionPrompts:
    """The pieces of a session that asks the sample's first `max_turns` turns (None: all).

    The official runner cuts the turns before it builds any prompt, so "the last turn" (Math.Find's
    chat follow-ups) is the last asked one.
    """
    if style not in PROMPT_STYLES:
        raise ValueError(f"unknown prompt style {style!r}; valid: {', '.join(PROMPT_STYLES)}")
    asked = sample if max_turns is None else replace(sample, turns=sample.turns[:max_turns])
    return SessionPrompts(task=task, sample=asked, chat=chat, style=style)
