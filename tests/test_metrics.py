"""SCBench metrics: every task pinned on hand-computed cases, official quirks and their fixes.

Expected values are worked out by hand in the comments, never by calling the scorer twice.
"""

from __future__ import annotations

import pytest

from data.sample import Sample, Turn
from programs.metrics import SCORING_MODES, score_turn
from programs.registry import task_names

BOTH = ("official", "fixed")


def one(task: str, prediction: str, answer, mode: str = "official", extras=None, metadata=None) -> float:
    turn = Turn(question="q", answer=answer, extras=dict(extras or {}))
    sample = Sample(id="s", context="ctx", turns=(turn,), metadata=dict(metadata or {}))
    return score_turn(task, prediction, turn, sample, mode)


# ------------------------------------------------------------------------------------------------
# interface


def test_modes_are_the_documented_ones():
    assert SCORING_MODES == ("official", "fixed")


def test_unknown_task_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        one("passkey", "1", "1")  # a sub-task, not a task
    assert str(err.value).endswith("Valid: " + ", ".join(task_names()))


def test_unknown_mode_names_the_valid_ones():
    with pytest.raises(ValueError) as err:
        one("kv", "x", "x", mode="lenient")
    assert "official" in str(err.value) and "fixed" in str(err.value)


def test_scores_are_floats():
    assert type(one("kv", "abc", "abc")) is float
    assert type(one("mf", "7", 7)) is float


# ------------------------------------------------------------------------------------------------
# string retrieval


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize("task", ["kv", "prefix_suffix"])
def test_substring_is_case_sensitive(task, mode):
    gold = "3f2a-bc91-Ede0"
    assert one(task, f'The value of the key is "{gold}".', gold, mode) == 1.0
    assert one(task, gold.lower(), gold, mode) == 0.0
    assert one(task, "3f2a-bc91", gold, mode) == 0.0  # a prefix is not enough
    assert one(task, "", gold, mode) == 0.0


@pytest.mark.parametrize("mode", BOTH)
def test_vt_fraction_of_names_rounded(mode):
    gold = ["ABCDE", "FGHIJ", "KLMNO"]
    assert one("vt", "abcde and FGHIJ", gold, mode) == 0.67  # 2/3 rounded to 2 places
    assert one("vt", "KLMNO, FGHIJ, ABCDE", gold, mode) == 1.0
    assert one("vt", "none of them", gold, mode) == 0.0
    assert one("vt", "XABCDEX", ["ABCDE", "QQQQQ"], mode) == 0.5  # substring, not word, match
    assert one("vt", "VAR ZZZZZ", ["ZZZZZ"], mode) == 1.0


def test_vt_string_gold_is_iterated_officially():
    # officially the characters of "AB-Z" are the names: "a", "b", "-" found, "z" not -> 0.75
    assert one("vt", "ab-", "AB-Z", "official") == 0.75
    assert one("vt", "ab-", "AB-Z", "fixed") == 0.0  # fixed: one name, "ab-z" not in "ab-"
    assert one("vt", "xx ab-z", "AB-Z", "fixed") == 1.0


# ------------------------------------------------------------------------------------------------
# English QA, multiple choice


@pytest.mark.parametrize("mode", BOTH)
def test_qa_eng_upper_containment(mode):
    gold = "Elizabeth Bennet"
    assert one("qa_eng", "  It was elizabeth bennet, of course. ", gold, mode) == 1.0
    assert one("qa_eng", "Elizabeth", gold, mode) == 0.0  # containment, not token F1
    assert one("qa_eng", "darcy", ["Mr. Darcy", "Darcy"], mode) == 1.0  # list gold: any
    assert one("qa_eng", "Bingley", ["Mr. Darcy", "Darcy"], mode) == 0.0


OPTIONS = ["Paris", "London", "Rome", "Berlin"]  # gold "Rome" -> labels ["Rome", "C"]


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize(
    "prediction, expected",
    [
        ("C", 1.0),
        (" C. Rome", 1.0),
        ("B", 0.0),
        ("Rome", 1.0),  # the whole output equals the option text
        ("The answer is C.", 1.0),  # "answer is" prefix, then the letter
        ("The answer is Rome", 1.0),  # ... or the option text
        ("The correct answer: C", 1.0),
        ("I think it is C", 1.0),  # first word that is a substring of "ABCD"
        ("I think it is D", 0.0),
        ("Hmm AB C", 0.0),  # quirk: "AB" is a substring of "ABCD", so it decides (and is wrong)
        ("Based on the text, C", 0.0),  # quirk: leading "B" is read as the letter B
        ("Answer: C", 0.0),  # quirk: leading "A" of "Answer" is read as the letter A
        ("The answer is (C)", 0.0),  # quirk: "(C)" does not start with "C"
        ("", 0.0),
    ],
)
def test_choice_eng_letter_match(prediction, expected, mode):
    assert one("choice_eng", prediction, "Rome", mode, extras={"options": OPTIONS}) == expected


def test_choice_eng_without_options_uses_the_gold_alone():
    assert one("choice_eng", "B", "B") == 1.0
    assert one("choice_eng", "the answer is B", "B") == 1.0
    assert one("choice_eng", "C", "B") == 0.0


# ------------------------------------------------------------------------------------------------
# ICL many-shot: official any-character quirk vs fixed letter match


@pytest.mark.parametrize(
    "prediction, gold, official, fixed",
    [
        ("(A)", "(A)", 1.0, 1.0),
        ("(B)", "(A)", 1.0, 0.0),  # quirk: "(" of the gold occurs in the output
        ("B", "(A)", 0.0, 0.0),
        ("Answer: B", "(A)", 1.0, 0.0),  # quirk: the "A" of "ANSWER"
        ("Answer: (A)", "(A)", 1.0, 1.0),
        ("the answer is (A)", "(A)", 1.0, 1.0),
        ("A careful reading gives (B)", "(B)", 1.0, 1.0),  # article "A" is not a choice
        ("A careful reading gives (B)", "(A)", 1.0, 0.0),
        ("(G) Bob", "(G)", 1.0, 1.0),  # seven-object tracking goes up to (G)
        ("B) 12/11/1937", "(B)", 1.0, 1.0),
        ("C", "C", 1.0, 1.0),  # gold stored without parentheses
        ("Bananas", "A", 1.0, 0.0),  # quirk: any "A" in the output
        ("the answer is b", "(B)", 1.0, 0.0),  # fixed wants an upper-case option letter
        ("", "(A)", 0.0, 0.0),
    ],
)
def test_many_shot_modes(prediction, gold, official, fixed):
    assert one("many_shot", prediction, gold, "official") == official
    assert one("many_shot", prediction, gold, "fixed") == fixed


def test_many_shot_fixed_falls_back_to_containment_for_non_letter_gold():
    assert one("many_shot", "It is valid.", "valid", "fixed") == 1.0
    assert one("many_shot", "It is invalid? no", "True", "fixed") == 0.0


# ------------------------------------------------------------------------------------------------
# Chinese QA: official iterates the gold string's characters


@pytest.mark.parametrize(
    "prediction, gold, official, fixed",
    [
        # pred 北京市 (3 chars): official best single char: P=1/3, R=1 -> 2*(1/3)/(4/3) = 1/2;
        # fixed: overlap 2, P=2/3, R=1 -> 0.8
        ("北京市", "北京", 0.5, 0.8),
        # pred 北: official R=1 for the char 北 -> 1.0; fixed P=1, R=1/2 -> 2/3
        ("北", "北京", 1.0, 2 / 3),
        # 答案是北京 (5 chars): official 2/(5+1) = 1/3; fixed P=2/5, R=1 -> 0.8/1.4 = 4/7
        ("答案是北京", "北京", 1 / 3, 4 / 7),
        # punctuation and whitespace are dropped: normalised pred 北京 (2 chars): official 2/3
        ("北 京！", "北京。", 2 / 3, 1.0),
        ("上海", "北京", 0.0, 0.0),
        # upper case is lowered on both sides
        ("ABC", "abc", 0.5, 1.0),
    ],
)
def test_qa_chn_modes(prediction, gold, official, fixed):
    assert one("qa_chn", prediction, gold, "official") == pytest.approx(official)
    assert one("qa_chn", prediction, gold, "fixed") == pytest.approx(fixed)


def test_qa_chn_list_gold_takes_the_best_element_in_both_modes():
    # a list is what the official function was written for: both modes agree
    assert one("qa_chn", "北京", ["上海", "北京"], "official") == 1.0
    assert one("qa_chn", "北京", ["上海", "北京"], "fixed") == 1.0
    # pred 北京市 vs 北京: 0.8 (see above) in both modes
    assert one("qa_chn", "北京市", ["北京"], "official") == pytest.approx(0.8)


# ------------------------------------------------------------------------------------------------
# Math.Find and passkey


@pytest.mark.parametrize("mode", BOTH)
@pytest.mark.parametrize(
    "prediction, gold, expected",
    [
        ("42", 42, 1.0),
        (" 42, since the array ...", 42, 1.0),
        ("43", 42, 0.0),
        ("42.7", 42, 1.0),  # quirk kept in both modes: truncated toward zero for an integer gold
        ("4 2", 42, 0.0),  # only the first number counts
        ("x-ray 7", 7, 1.0),
        ("no idea", 42, 0.0),
        ("2.5", 2.5, 1.0),
        ("2.50", 2.5, 1.0),  # float comparison
        ("2", 2.5, 0.0),
        ("17", "17", 1.0),  # a numeric string gold is read as an int
        ("17", [17], 1.0),  # a one-element list gold is unwrapped
    ],
)
def test_mf_first_number(prediction, gold, expected, mode):
    assert one("mf", prediction, gold, mode) == expected


@pytest.mark.parametrize(
    "prediction, gold, official, fixed",
    [
        ("-42", -42, 0.0, 1.0),  # official quirk: the sign is not read, a negative gold never matches
        ("-42", 42, 1.0, 0.0),  # ... and a wrong negative answer matches the positive gold
        ("The minimum is -7.", -7, 0.0, 1.0),
        ("\u22127", -7, 0.0, 1.0),  # U+2212 minus sign
        ("- 7", -7, 0.0, 0.0),  # a detached dash is not a sign
        ("- 7", 7, 1.0, 1.0),
        ("-3.5", -3, 0.0, 1.0),  # int(float("-3.5")) == -3: truncation toward zero
    ],
)
def test_mf_sign_official_vs_fixed(prediction, gold, official, fixed):
    assert one("mf", prediction, gold, "official") == official
    assert one("mf", prediction, gold, "fixed") == fixed


def test_mf_rejects_non_numeric_gold():
    with pytest.raises(ValueError):
        one("mf", "3", "three")


# ------------------------------------------------------------------------------------------------
# summary: ROUGE-Lsum F from rouge-score


@pytest.mark.parametrize("mode", BOTH)
def test_summary_rouge_lsum(mode):
    # one line each: LCS "the cat on the mat" = 5; P = 5/5, R = 5/6 -> F = (10/6)/(11/6) = 10/11
    assert one("summary", "the cat on the mat", "the cat sat on the mat", mode) == pytest.approx(10 / 11)
    # lines are sentences: union LCS per gold line, so swapped lines score 1.0 (plain ROUGE-L: 0.5)
    gold = "alpha beta gamma\ndelta epsilon zeta"
    assert one("summary", "delta epsilon zeta\nalpha beta gamma", gold, mode) == pytest.approx(1.0)
    # union LCS: gold line 1 hits {alpha, beta}, line 2 hits {delta, zeta} -> 4 hits;
    # R = 4/6, P = 4/5 -> F = 2 * (8/15) / (22/15) = 8/11
    assert one("summary", "alpha beta\ndelta omega zeta", gold, mode) == pytest.approx(8 / 11)
    # lower-cased, punctuation dropped, no stemming
    assert one("summary", "The Cat, sat!", "the cat sat", mode) == pytest.approx(1.0)
    # "cats" vs "cat": no stemmer -> 0 overlap
    assert one("summary", "cats", "cat", mode) == 0.0
    assert one("summary", "", "the cat sat", mode) == 0.0


# ------------------------------------------------------------------------------------------------
# Mix tasks: each turn routed by extras["task"]


def _needles_sample() -> Sample:
    turns = (
        Turn("summarise doc 1", "alpha beta gamma", {"task": "scbench_summary"}),
        Turn("what is the pass key?", "68231", {"task": "scbench_passkey"}),
    )
    return Sample(id="m", context="ctx", turns=turns)


@pytest.mark.parametrize("mode", BOTH)
def test_summary_with_needles_routes_each_turn(mode):
    sample = _needles_sample()
    summary, passkey = sample.turns
    # summary turn: ROUGE-Lsum; "alpha beta" vs "alpha beta gamma": P=1, R=2/3 -> F = 0.8
    assert score_turn("summary_with_needles", "alpha beta", summary, sample, mode) == pytest.approx(0.8)
    # passkey turn: the first digit run must equal the gold
    assert score_turn("summary_with_needles", "The pass key is 68231.", passkey, sample, mode) == 1.0
    assert score_turn("summary_with_needles", "68,231", passkey, sample, mode) == 0.0  # "68"
    assert score_turn("summary_with_needles", "0068231", passkey, sample, mode) == 0.0  # leading zeros
    assert score_turn("summary_with_needles", "no key", passkey, sample, mode) == 0.0
    # an integer gold: officially "68231" == 68231 is never true; fixed compares through str()
    int_turn = Turn("pass key?", 68231, {"task": "scbench_passkey"})
    expected = 0.0 if mode == "official" else 1.0
    assert score_turn("summary_with_needles", "key: 68231", int_turn, sample, mode) == expected


def test_mix_turn_with_unknown_subtask_is_an_error():
    sample = _needles_sample()
    bad = Turn("q", "x", {"task": "scbench_kv"})
    with pytest.raises(ValueError, match="scbench_passkey"):
        score_turn("summary_with_needles", "x", bad, sample)
    with pytest.raises(ValueError, match="scbench_repoqa"):
        score_turn("repoqa_and_kv", "x", Turn("q", "x", {}), sample)
