"""The text the programs send equals the text SCBench's own code builds, for every fixture row of
every config, both modes, three real chat templates and none; `--prompts fixed` corrects each of
the official runner's quirks (and nothing else)."""

from __future__ import annotations

import copy
import json

import pytest

from data.loader import configs, fixture_path
from data.sample import sample_from_row
from programs import get_program, get_task
from programs.mf import ask
from programs.prompts import FIXED, OFFICIAL, session_prompts
from runtime.chat_template import ChatFormat
from tests.chat_formats import NAMES, with_template
from tests.reference import scbench_prompts as ref

CHATS = (None,) + NAMES  # None: no chat template (plain text)


@pytest.fixture(scope="module")
def tokenizers(tmp_path_factory):
    from tests.tiny_model import build_tokenizer

    base = build_tokenizer(tmp_path_factory.mktemp("tokenizer"))
    return {None: base, **{name: with_template(base, name) for name in NAMES}}


def rows(config: str) -> list[dict]:
    return [json.loads(line) for line in fixture_path(config).read_text(encoding="utf-8").splitlines() if line.strip()]


def prompts(tokenizers, config: str, chat: str | None, row: dict, position: int, style: str = OFFICIAL):
    tok = tokenizers[chat]
    return session_prompts(get_task(config), sample_from_row(row, fallback_id=position), ChatFormat(tok) if chat else None, style)


def official(tokenizers, config: str, chat: str | None, row: dict, mode: str) -> list[str]:
    build = ref.create_multiturn_prompt if mode == "multi-turn" else ref.create_scdq_prompt
    return build(copy.deepcopy(row), config, tokenizers[chat], use_chat_template=chat is not None)["prompts"]


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("config", configs())
def test_multi_turn_text_is_scbench_text(tokenizers, config, chat):
    for position, row in enumerate(rows(config)):
        want = official(tokenizers, config, chat, row, "multi-turn")
        got = prompts(tokenizers, config, chat, row, position).pieces("multi-turn")
        assert len(got) == len(want) == len(row["multi_turns"])
        for turn in range(len(want)):  # turn i sends pieces 0..i
            assert "".join(got[: turn + 1]) == "".join(want[: turn + 1]), (config, position, turn)


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("config", configs())
def test_multi_request_text_is_scbench_text(tokenizers, config, chat):
    for position, row in enumerate(rows(config)):
        want = official(tokenizers, config, chat, row, "multi-request")
        got = prompts(tokenizers, config, chat, row, position).pieces("multi-request")
        assert len(got) == len(want) == len(row["multi_turns"]) + 1
        for request in range(1, len(want)):  # request i sends the context piece + its own
            assert got[0] + got[request] == want[0] + want[request], (config, position, request)


def test_llama_template_writes_its_system_block_and_trims(tokenizers):
    row = rows("scbench_mf")[0]
    first = prompts(tokenizers, "scbench_mf", "llama3.1", row, 0).first_turn()
    assert first.startswith("<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: December 2023\n")
    # Math.Find inputs end with ": "; the template's `| trim` drops the trailing space.
    assert row["multi_turns"][0]["input"].endswith(": ")
    assert first.endswith(row["multi_turns"][0]["input"].rstrip() + "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")


# --- `--prompts fixed`: each quirk corrected -------------------------------------------------------


def both(tokenizers, config, chat, index=0):
    row = rows(config)[index]
    return row, prompts(tokenizers, config, chat, row, index), prompts(tokenizers, config, chat, row, index, FIXED)


@pytest.mark.parametrize("chat", [None, "smollm2"])
def test_fixed_separates_question_from_context_in_multi_request(tokenizers, chat):
    _, official_p, fixed_p = both(tokenizers, "scbench_kv", chat)
    assert fixed_p.context() == official_p.context() + "\n\n"
    assert fixed_p.question(1) == official_p.question(1)
    if chat is None:  # both modes then share the committed prefix
        assert fixed_p.first_turn().startswith(fixed_p.context())
        assert not official_p.first_turn().startswith(official_p.context() + official_p.question(0))


def test_fixed_drops_this_paper_from_summary_follow_ups(tokenizers):
    row, official_p, fixed_p = both(tokenizers, "scbench_summary", "smollm2")
    gold = row["multi_turns"][0]["answer"]
    assert official_p.follow_up(1, gold).endswith("<|im_start|>assistant\nThis paper")
    assert fixed_p.follow_up(1, gold) == official_p.follow_up(1, gold).removesuffix("This paper")
    _, plain_official, plain_fixed = both(tokenizers, "scbench_summary", None)
    assert plain_official.follow_up(1, gold) == plain_fixed.follow_up(1, gold) == f"{gold}\n\n{row['multi_turns'][1]['input']}"


def test_fixed_math_find_chat_follow_ups_ask_their_own_statistic(tokenizers):
    row, official_p, fixed_p = both(tokenizers, "scbench_mf", "smollm2")
    turns = official_p.sample.turns
    assert len(turns) == 3 and ask(turns[1]) != ask(turns[2])
    assert f"{ask(turns[2])}\n\n{turns[1].question}" in official_p.follow_up(1, turns[0].answer)  # the last turn's
    assert f"{ask(turns[1])}\n\n{turns[1].question}" in fixed_p.follow_up(1, turns[0].answer)
    # Plain text asks each turn's own statistic in both styles.
    _, plain_official, _ = both(tokenizers, "scbench_mf", None)
    assert plain_official.follow_up(1, turns[0].answer) == f"{turns[0].answer}\n\n{ask(turns[1])}\n\n{turns[1].question}"


def test_fixed_math_find_multi_request_context_asks_the_statistic(tokenizers):
    row, official_p, fixed_p = both(tokenizers, "scbench_mf", None)
    first = official_p.sample.turns[0]
    assert official_p.context().startswith(first.question + "\n\n[")
    assert fixed_p.context().startswith(ask(first) + "\n\n[")
    assert fixed_p.first_turn().startswith(fixed_p.context())  # the prefix multi-turn commits too


def test_fixed_choice_follow_ups_keep_the_first_turns_lead_in(tokenizers):
    row, official_p, fixed_p = both(tokenizers, "scbench_choice_eng", None)
    gold = row["multi_turns"][0]["answer"]
    assert official_p.first_turn().endswith("The the correct answer is")
    assert official_p.follow_up(1, gold).endswith("The letter of the correct answer is")
    assert fixed_p.follow_up(1, gold) == f"{gold}\n\n{official_p.question(1)}"
    assert fixed_p.follow_up(1, gold).endswith("The the correct answer is")


@pytest.mark.parametrize("chat", [None, "qwen2.5"])
def test_fixed_writes_the_multi_hop_history_as_names(tokenizers, chat):
    row, official_p, fixed_p = both(tokenizers, "scbench_vt", chat)
    gold = row["multi_turns"][0]["answer"]
    assert str(gold) in official_p.follow_up(1, gold) and str(gold).startswith("['")
    assert ", ".join(gold) in fixed_p.follow_up(1, gold) and str(gold) not in fixed_p.follow_up(1, gold)


@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
def test_fixed_sends_one_bos_where_the_tokenizer_adds_it(tokenizers, mode):
    tok = tokenizers["llama3.1"]
    bos = tok.convert_tokens_to_ids("<|begin_of_text|>")
    _, official_p, fixed_p = both(tokenizers, "scbench_kv", "llama3.1")
    assert tok(official_p.first(mode))["input_ids"][:2] == [bos, bos]  # SCBench's double BOS
    fixed_ids = tok(fixed_p.first(mode))["input_ids"]
    assert fixed_ids[0] == bos and fixed_ids[1] != bos
    # A tokenizer that adds no BOS keeps the template's text as it is.
    _, smol_official, smol_fixed = both(tokenizers, "scbench_kv", "smollm2")
    assert smol_fixed.first(mode).removesuffix("\n\n") == smol_official.first(mode)


@pytest.mark.parametrize("chat", CHATS)
@pytest.mark.parametrize("config", ["scbench_kv", "scbench_qa_eng", "scbench_repoqa_and_kv", "scbench_many_shot"])
def test_fixed_changes_nothing_else_in_multi_turn(tokenizers, config, chat):
    if chat == "llama3.1":
        pytest.skip("the fixed style drops Llama's repeated BOS (tested above)")
    for position, row in enumerate(rows(config)):
        official_p = prompts(tokenizers, config, chat, row, position)
        fixed_p = prompts(tokenizers, config, chat, row, position, FIXED)
        assert fixed_p.pieces("multi-turn") == official_p.pieces("multi-turn")


# --- the real program sends these pieces ----------------------------------------------------------


@pytest.mark.server
@pytest.mark.parametrize("mode", ["multi-turn", "multi-request"])
@pytest.mark.parametrize("config, style", [("scbench_mf", OFFICIAL), ("scbench_summary", OFFICIAL), ("scbench_vt", FIXED)])
def test_the_program_sends_the_pieces(connection, config, style, mode):
    from benchmarks.recording import Recorder

    task = get_task(config)
    (sample,) = [sample_from_row(r, fallback_id=i) for i, r in enumerate(rows(config))][:1]
    pieces = session_prompts(task, sample, ChatFormat(connection.tokenizer), style).pieces(mode)
    connection.backend.flush_cache()
    with Recorder() as recorder:
        state = get_program(task.name, mode).run(backend=connection.backend, sample=sample, chat=connection.chat, prompts=style)
    assert state.error() is None
    sent = {c.meta.get("id"): c.payload["text"] for c in recorder.generate_calls()}
    for result in state.ret_value:
        turn = result["turn"]
        want = "".join(pieces[: turn + 1]) if mode == "multi-turn" else pieces[0] + pieces[turn + 1]
        assert sent[result["request_id"]] == want
    if mode == "multi-request":  # the context was committed on its own first
        assert recorder.generate_calls()[0].payload["text"] == pieces[0]
