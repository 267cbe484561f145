"""The step-through viewer: a run's sessions turn by turn, each turn's needle found in its context.

Everything a run holds (sample ids, questions, answers, gold, errors, method names) is shown inert:
control characters spelled out, never read as markup (`runtime.terminal_text`).
"""

from __future__ import annotations

from bisect import bisect_right

from rich.text import Text
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Static

from results.agreement import Agreement
from results.records import TurnRecord
from runtime.terminal_text import inert, one_line
from tui.render import Needle, display_text, find_needles, focus_offset, kept_map_text, line_text, wrap_starts
from tui.session import Navigator

NEEDLE_STYLES = {"key": "bold black on yellow", "gold": "bold black on green"}
NO_CONTEXT = "(context unavailable: this run has no contexts/ folder; older runs did not keep one)"


class ContextView(ScrollView, can_focus=True):
    """The shared context, word-wrapped by us (so a character offset maps to a line) and drawn line
    by line (contexts run to megabytes); needles highlighted, the first one scrolled into view."""

    DEFAULT_CSS = "ContextView { overflow-x: hidden; overflow-y: scroll; }"

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.text = ""
        self.highlights: list[tuple[int, int, str]] = []
        self.focus_at: int | None = None
        self.starts = [0]
        self.wrap_width = 0  # 0: wrap again at the next layout

    def show(self, context: str | None, needles: list[Needle]) -> None:
        text = NO_CONTEXT if context is None else display_text(context)
        if text != self.text:
            self.text, self.wrap_width = text, 0
            self.scroll_to(y=0, animate=False)
        self.highlights = [(start, end, NEEDLE_STYLES[n.kind]) for n in needles for start, end in n.spans]
        self.focus_at = focus_offset(needles)
        self._layout()
        self.refresh()

    @property
    def focus_line(self) -> int | None:
        return None if self.focus_at is None else bisect_right(self.starts, self.focus_at) - 1

    def on_resize(self) -> None:
        self.wrap_width = 0
        self._layout()

    def _layout(self) -> None:
        width = self.scrollable_content_region.width
        if width <= 0:
            return  # not laid out yet: on_resize comes back
        if width != self.wrap_width:
            self.starts, self.wrap_width = wrap_starts(self.text, width), width
            self.virtual_size = Size(width, len(self.starts))
        if self.focus_line is not None:
            # A third of the way down: the lines before the needle give it context.
            target = max(self.focus_line - self.scrollable_content_region.height // 3, 0)
            self.call_after_refresh(self.scroll_to, y=target, animate=False)

    def render_line(self, y: int) -> Strip:
        width, index = self.size.width, self.scroll_offset.y + y
        if not self.wrap_width or index >= len(self.starts):
            return Strip.blank(width, self.rich_style)
        line = line_text(self.text, self.starts, index, self.highlights)
        return Strip(line.render(self.app.console)).apply_style(self.rich_style).crop_extend(0, width, self.rich_style)

    def visible_text(self) -> str:
        """The lines on screen, as plain text."""
        return "\n".join(self.render_line(y).text.rstrip() for y in range(self.size.height))


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _score(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}"


def _gold_text(gold) -> str:
    return ", ".join(map(str, gold)) if isinstance(gold, (list, tuple)) else str(gold)


def _shown(text: str) -> str:
    """Model output as shown: trimmed; an all-blank answer says so rather than showing nothing."""
    return text.strip() or f"(blank: {len(text)} whitespace characters)"


def stats_text(turn: TurnRecord, needles: list[Needle], has_context: bool, agreement: Agreement | None = None) -> Text:
    score = turn.score or 0.0
    text = Text()
    text.append("score ").append(_score(turn.score), style="bold green" if score >= 0.5 else "bold red")
    text.append(f" official, {_score(turn.score_fixed)} fixed (x100)\n")
    if turn.gold_nll is not None:
        text.append(f"gold answer through this KV: NLL {turn.gold_nll:.2f} nats/token, "
                    f"{_pct(turn.gold_token_acc)} of its {turn.gold_tokens} tokens ranked first\n")
    if agreement is not None:
        text.append(f"vs full attention's answer: exact {'yes' if agreement.exact else 'no'}, word F1 {_pct(agreement.f1)}\n")
    text.append(f"prompt {turn.prompt_tokens if turn.prompt_tokens is not None else '-'} tokens: ")
    text.append(f"{turn.cached_tokens if turn.cached_tokens is not None else '-'} cached, ")
    text.append(f"{turn.new_prefill_tokens if turn.new_prefill_tokens is not None else '-'} new prefill\n")
    text.append(f"latency {'-' if turn.latency is None else f'{turn.latency:.2f} s'}\n")
    text.append(f"kept KV {_pct(turn.kept_kv)} (share of the request's KV visible at its first decode step)\n")
    if has_context:
        found = [f"{n.kind} {len(n.spans)}x" if n.spans else f"{n.kind} not found" for n in needles]
        text.append(f"in context: {', '.join(found) or 'nothing to look for'}", style="dim")
    return text


class ViewerApp(App):
    """Keys: turns n/p (or right/left), sessions N/P (or j/k), methods m/M, q quits; up/down scroll."""

    TITLE = "SCBench run viewer"
    CSS = """
    #header { height: 1; padding: 0 1; background: $primary; color: $text; text-style: bold; }
    ContextView { height: 1fr; border: round $secondary; }
    #turn { height: 45%; }
    #texts { width: 1fr; }
    #numbers { width: 84; max-width: 60%; }
    #question, #answer, #stats, #keptmap { height: auto; border: round $secondary; padding: 0 1; }
    """
    BINDINGS = [
        Binding("n,right", "next_turn", "next turn", key_display="n/→", priority=True),
        Binding("p,left", "prev_turn", "prev turn", key_display="p/←", priority=True),
        Binding("N,j", "next_session", "next session", key_display="N/j", priority=True),
        Binding("P,k", "prev_session", "prev session", key_display="P/k", priority=True),
        Binding("m", "method(1)", "next method", priority=True),
        Binding("M", "method(-1)", "prev method", priority=True),
        Binding("q", "quit", "quit"),
    ]

    def __init__(self, navigator: Navigator):
        super().__init__()
        self.nav = navigator

    def compose(self) -> ComposeResult:
        yield Static(id="header")
        yield ContextView(id="context")
        with Horizontal(id="turn"):
            with VerticalScroll(id="texts"):
                yield Static(id="question")
                yield Static(id="answer")
            with VerticalScroll(id="numbers"):
                yield Static(id="stats")
                yield Static(id="keptmap")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#context").focus()  # up/down and page keys scroll the context
        self.show()

    def show(self) -> None:
        nav, session = self.nav, self.nav.session
        turn, context = nav.turn, session.context
        failed = f"  FAILED: {session.error}" if session.error and not turn else ""
        self.query_one("#header", Static).update(inert(one_line(
            f"{session.method} | {session.task} | {session.mode} | sample {session.sample_id} | {nav.position()}{failed}"
        )))
        needles = find_needles(context, turn.question or "", "" if turn.gold is None else turn.gold) if turn and context else []
        view = self.query_one(ContextView)
        view.border_title = inert(one_line(f"context of {session.sample_id}" + (f" ({len(context):,} characters)" if context else "")))
        view.show(context, needles)
        question, answer = self.query_one("#question", Static), self.query_one("#answer", Static)
        stats, kept = self.query_one("#stats", Static), self.query_one("#keptmap", Static)
        question.border_title = f"question {nav.turn_index + 1}/{len(session.turns)}" if turn else "question"
        answer.border_title, stats.border_title = "answer vs gold", "score and tokens"
        kept.border_title = "kept KV by layer x position (blank: dropped, █: all kept)"
        if turn is None:
            question.update(Text("(the session failed before any turn finished)"))
            answer.update(inert(session.error or "", style="red"))
            stats.update("")
            kept.update("")
            return
        question.update(inert(turn.question or ""))
        answer.update(Text.assemble(
            ("prediction: ", "bold"), inert(_shown(turn.prediction or "")), "\n", ("gold:       ", "bold"), inert(_gold_text(turn.gold)),
        ))
        stats.update(stats_text(turn, needles, context is not None, session.agreement.get(turn.turn)))
        kept.update(kept_map_text(turn.kept_map) if turn.kept_map else Text(
            "no kept map: full attention, or a server without the kvm backend", style="dim"
        ))

    def _move(self, step) -> None:
        step()
        self.show()

    def action_next_turn(self) -> None:
        self._move(self.nav.next_turn)

    def action_prev_turn(self) -> None:
        self._move(self.nav.prev_turn)

    def action_next_session(self) -> None:
        self._move(self.nav.next_session)

    def action_prev_session(self) -> None:
        self._move(self.nav.prev_session)

    def action_method(self, step: int) -> None:
        self._move(lambda: self.nav.switch_method(step))
