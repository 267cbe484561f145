"""The first prompt is cut as SCBench's runner cuts it: the same budget (`max_input_length`), the
same kept tokens (`truncate_by_tokens`), sent as text."""

from __future__ import annotations

import contextlib
import io

import pytest

from bench.runner import BenchSpec, fit_to_max_seq_len, plan_budget_turns
from data.generators import generate_kv, token_counter
from data.sample import Sample, Turn
from data.schema import hub_row
from data.truncation import DEFAULT_MAX_SEQ_LEN, effective_max_seq_len, prompt_budget, truncate_prompt
from programs import get_task
from programs.prompts import session_prompts
from runtime.backend import Connection
from runtime.chat_template import ChatFormat
from tests.chat_formats import with_template
from tests.reference import scbench_prompts as ref
from tests.reference.scbench_truncation import max_input_length, truncate_by_tokens

CHATS = (None, "smollm2", "llama3.1")  # Llama's tokenizer adds BOS on encode: the cut counts it


@pytest.fixture(scope="module")
def base_tokenizer(tmp_path_factory):
    from tests.tiny_model import build_tokenizer

    return build_tokenizer(tmp_path_factory.mktemp("tokenizer"))


@pytest.fixture(scope="module")
def long_kv(base_tokenizer) -> Sample:
    (sample,) = generate_kv(token_counter(base_tokenizer), num_samples=1, context_tokens=3000, num_turns=2, seed=1)
    return sample


def official_cut(text: str, tokenizer, budget: int) -> list[int]:
    with contextlib.redirect_stdout(io.StringIO()):  # the official function prints its counts
        return truncate_by_tokens(text, tokenizer, budget)


def tokenizer_for(base, chat):
    return base if chat is None else with_template(base, chat)


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_cut_first_prompt_is_the_official_one(base_tokenizer, long_kv, chat, mode):
    tok = tokenizer_for(base_tokenizer, chat)
    row = hub_row(long_kv, "scbench_kv", 0)
    build = ref.create_multiturn_prompt if mode == "multi-turn" else ref.create_scdq_prompt
    first = build(row, "scbench_kv", tok, use_chat_template=chat is not None)["prompts"][0]
    ours = session_prompts(get_task("kv"), long_kv, ChatFormat(tok) if chat else None).first(mode)
    assert ours == first

    budget = max_input_length([row], "scbench_kv", 150, 2000, 5, mode == "multi-request")
    assert budget == prompt_budget(2000, 150, 2, mode) == (1700 if mode == "multi-turn" else 700)
    kept = official_cut(first, tok, budget)
    cut = truncate_prompt(tok, ours, budget)
    assert cut.cut and cut.tokens_after == len(kept) == 2 * (budget // 2) and cut.tokens_before > budget
    # The text sent is the official kept tokens' text (the BOS the tokenizer adds is the server's).
    added_bos = tok.bos_token if chat == "llama3.1" else ""
    assert tok.decode(kept) == added_bos + cut.text
    assert abs(len(tok(cut.text)["input_ids"]) - len(kept)) <= 2  # tokens may merge at the seam
    assert ours[: cut.start] + ours[cut.end :] == cut.text


def test_no_cut_when_it_fits_or_when_the_budget_is_negative(base_tokenizer, long_kv):
    text = session_prompts(get_task("kv"), long_kv).first("multi-turn")
    n = len(base_tokenizer(text)["input_ids"])
    for budget in (n, n + 1, -1):
        assert official_cut(text, base_tokenizer, budget) == base_tokenizer(text)["input_ids"]
        assert truncate_prompt(base_tokenizer, text, budget).text == text


@pytest.mark.parametrize("config, turns_in_first_row, max_turns", [
    ("scbench_summary_with_needles", 8, 5), ("scbench_summary_with_needles", 3, 5), ("scbench_repoqa_and_kv", 8, 0),
    ("scbench_kv", 5, 5), ("scbench_kv", 2, 0), ("scbench_vt", 7, 3),
])
@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
@pytest.mark.parametrize("max_seq_length", [131_072, 8192, 900])
def test_budget_arithmetic_is_the_official_one(config, turns_in_first_row, max_turns, mode, max_seq_length):
    task = get_task(config)
    tasks = ["scbench_summary", "scbench_passkey"] if config == "scbench_summary_with_needles" else ["scbench_repoqa", "scbench_kv"]
    turns = tuple(Turn(f"q{i}", "a", {"task": tasks[i % 2]}) for i in range(turns_in_first_row))
    first = Sample("0", "ctx", turns)
    later = Sample("1", "ctx", turns + turns)  # more turns than the first row: the first row counts
    rows = [hub_row(s, config, i) for i, s in enumerate((first, later))]
    planned = [(task, mode, first, 0), (task, mode, later, 1)]
    counted = plan_budget_turns(planned, max_turns or None)[task.name]
    try:
        want = max_input_length(rows, config, task.max_new_tokens, max_seq_length, max_turns, mode == "multi-request")
    except AssertionError:  # the official runner refuses answers longer than the sequence
        with pytest.raises(ValueError, match="do not fit --max-seq-len"):
            prompt_budget(max_seq_length, task.max_new_tokens, counted, mode)
        return
    assert prompt_budget(max_seq_length, task.max_new_tokens, counted, mode) == want


def test_answer_budget_as_large_as_the_sequence_counts_500_tokens():
    assert prompt_budget(150, 150, 2, "multi-turn") == max_input_length([{"multi_turns": [1, 2]}], "scbench_kv", 150, 150, 5, False) == 150 - 1000


def test_default_is_the_official_length_capped_to_the_model():
    assert BenchSpec().max_seq_len == DEFAULT_MAX_SEQ_LEN == 131_072
    assert effective_max_seq_len(131_072, 8192) == 8192
    assert effective_max_seq_len(4096, 8192) == 4096
    assert effective_max_seq_len(131_072, None) == 131_072
    assert effective_max_seq_len(None, 8192) is None and effective_max_seq_len(0, 8192) is None


def connection(tokenizer, chat: bool, context_length: int | None) -> Connection:
    return Connection(url="http://x", backend=None, tokenizer=tokenizer, model_path="m", chat=chat,
                      chat_format=ChatFormat(tokenizer) if chat else None, context_length=context_length)


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_runner_sends_the_cut_prompt_and_records_it(base_tokenizer, long_kv, mode):
    tok = with_template(base_tokenizer, "smollm2")
    task = get_task("kv")
    # The model's context (2,000 tokens) is below --max-seq-len: the budget comes from the model's.
    conn = connection(tok, True, context_length=2000)
    spec = BenchSpec(max_seq_len=131_072, max_turns=5)
    sample, first_prompt = fit_to_max_seq_len(conn, task, long_kv, mode, spec, budget_turns=2)
    budget = prompt_budget(2000, 150, 2, mode)
    want = truncate_prompt(tok, session_prompts(task, long_kv, ChatFormat(tok)).first(mode), budget)
    assert first_prompt == want.text
    assert sample.metadata["truncation"] == want.record(budget)
    assert sample.context == long_kv.context and sample.turns == long_kv.turns
    # No cut: the first prompt is left to the program, nothing is recorded.
    untouched, none = fit_to_max_seq_len(connection(tok, True, None), task, long_kv, mode, spec, budget_turns=2)
    assert none is None and untouched is long_kv
    off, none = fit_to_max_seq_len(conn, task, long_kv, mode, BenchSpec(max_seq_len=None), budget_turns=2)
    assert none is None and off is long_kv


def test_the_budget_counts_the_first_rows_turns_by_default(base_tokenizer, long_kv):
    tok = base_tokenizer
    conn = connection(tok, False, None)
    spec = BenchSpec(max_seq_len=2400, max_turns=5)
    # budget_turns=None counts the sample's own 2 turns; the first row's 4 turns leave less room.
    _, own = fit_to_max_seq_len(conn, get_task("kv"), long_kv, "multi-turn", spec)
    _, first_rows = fit_to_max_seq_len(conn, get_task("kv"), long_kv, "multi-turn", spec, budget_turns=4)
    assert len(tok(own)["input_ids"]) > len(tok(first_rows)["input_ids"])
    assert abs(len(tok(first_rows)["input_ids"]) - prompt_budget(2400, 150, 4, "multi-turn")) <= 2


@pytest.mark.server
@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_a_session_sends_the_cut_first_prompt(connection, mode):
    from bench.runner import run_session
    from benchmarks.recording import Recorder

    task = get_task("kv")
    count = token_counter(connection.tokenizer)
    (sample,) = generate_kv(count, num_samples=1, context_tokens=3000, num_turns=2, seed=2)
    spec = BenchSpec(max_seq_len=2500, modes=(mode,))
    budget = prompt_budget(2500, 150, 2, mode)
    pieces = session_prompts(task, sample, connection.chat_format).pieces(mode)
    cut = truncate_prompt(connection.tokenizer, pieces[0], budget)
    with Recorder() as recorder:
        outcome = run_session(connection, task, sample, mode, spec, count)
    assert outcome.error is None and cut.cut
    assert all(r.sample_meta["truncation"] == cut.record(budget) for r in outcome.records)
    sent = {c.meta.get("id"): c.payload["text"] for c in recorder.generate_calls()}
    for record in outcome.records:
        turn = record.turn
        rest = "".join(pieces[1 : turn + 1]) if mode == "multi-turn" else pieces[turn + 1]
        assert sent[record.request_id] == cut.text + rest
        assert record.prompt_tokens == len(connection.tokenizer(cut.text + rest)["input_ids"])  # as the server counts
