"""Multiple-choice metrics: En.MultiChoice (letter match) and ICL.ManyShot (official and fixed)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

_LETTERS = "ABCD"
# Punctuation the official En.MultiChoice scorer turns into spaces before looking for a prefix.
_CHOICE_PUNCTUATION = ("\n", '"', "'", ".", ",", "?", "!", "{", "}")
# Tried in this order (not by position in the text); case-sensitive, as in the official code.
_ANSWER_PREFIXES = ("answer is:", "answer:", "answer is", "option is")


def choice_labels(answer: Any, options: Sequence[str] | None) -> list[str]:
    """The acceptable strings for an En.MultiChoice turn: the gold option text and its letter.

    The dataset stores the gold as the option's text; the official runner (`get_ground_truth`) turns
    it into `[text, "ABCD"[options.index(text)]]`. If the gold is not among the options (e.g. a
    synthetic turn whose gold is already a letter) the gold alone is used.
    """
    text = answer if isinstance(answer, str) else str(answer)
    labels = [text]
    if options and text in list(options):
        index = list(options).index(text)
        if index < len(_LETTERS):
            labels.append(_LETTERS[index])
    return labels


def choice_match(prediction: str, labels: Sequence[str]) -> float:
    """En.MultiChoice, as the official `get_score_one_longbook_choice_eng` decides it.

    `labels` is `[option text, letter]` (see `choice_labels`). Steps, on the stripped output:
    1. empty -> 0;
    2. if the first character is one of A-D, that character is the answer (quirk: an output that
       starts with a capitalised word such as "Based on ..." or "According to ..." is read as
       "B" / "A");
    3. the whole output equal to a label -> 1;
    4. replace newlines, quotes, ".", ",", "?", "!", "{", "}" by spaces and squeeze double spaces;
       then for the first of "answer is:", "answer:", "answer is", "option is" (in that order,
       case-sensitive) present, the text one character after it must start with a label, else 0
       (quirk: parentheses are not stripped, so "The answer is (B)" scores 0);
    5. otherwise the first whitespace-separated word that is a substring of "ABCD" (so "AB" or
       "BCD" count as words here) decides.
    Kept as is in both scoring modes.
    """
    pred = prediction.strip()
    if not pred:
        return 0.0
    if pred[0] in _LETTERS:
        return 1.0 if pred[0] in labels else 0.0
    if pred in labels:
        return 1.0
    for char in _CHOICE_PUNCTUATION:
        pred = pred.replace(char, " ")
    while "  " in pred:
        pred = pred.replace("  ", " ")
    for prefix in _ANSWER_PREFIXES:
        idx = pred.find(prefix)
        if idx < 0:
            continue
        start = idx + len(prefix) + 1  # skips the one character (normally a space) after the prefix
        if len(pred) < start:
            return 0.0
        rest = pred[start:]
        return 1.0 if any(rest.startswith(label) for label in labels) else 0.0
    for word in pred.split():
        if word in _LETTERS:  # substring test, as in the official code
            return 1.0 if word in labels else 0.0
    return 0.0


def many_shot_official(prediction: str, gold: Any) -> float:
    """ICL.ManyShot as officially scored: the `scbench_many_shot` task falls through to
    `get_score_one_longdialogue_qa_eng` with the gold *string* (e.g. "(A)") as the label list, so
    the loop runs over its characters: 1.0 iff any character of the gold, upper-cased, occurs in
    the stripped, upper-cased output.

    Very lenient quirk: with gold "(A)" any output containing "(" or ")" scores 1.0, whatever the
    letter; with gold "B" any output containing a "b" (in any word) does. A list gold is iterated as
    a list of whole strings (what the official function was written for).
    """
    upper = prediction.strip().upper()
    items = [str(g) for g in gold] if isinstance(gold, (list, tuple)) else list(str(gold))
    return 1.0 if any(item.upper() in upper for item in items) else 0.0


# Gold of a BBH-style many-shot question: "(A)", "A" or "(A) option text".
_GOLD_LETTER = re.compile(r"^\s*(?:\(([A-Za-z])\)|([A-Za-z])\s*$)")
# 1. leading option: "(B)", "[B]", "B)", "B.", "B:", "B,", "B;", "B" alone, or "B " followed by
#    anything but a lower-case letter (so the article in "A careful reading ..." is not taken).
_LEADING_LETTER = re.compile(
    r"^\s*(?:[(\[]([A-Z])[)\]]|([A-Z])(?=[).:,;\]]|\s*$|\s+[^a-z\s]))"
)
# 2. stated answer: "answer is (B)", "Answer: B", "the option is [C]" (prefix case-insensitive).
_STATED_LETTER = re.compile(
    r"(?i:answer|option)\s*(?:(?i:is)\s*:?|:)\s*[(\[]?([A-Z])(?![A-Za-z])"
)
# 3. first parenthesised letter anywhere: "... so the date is (C) 05/01/2021".
_BRACKETED_LETTER = re.compile(r"\(([A-Z])\)")


def extract_option_letter(prediction: str) -> str | None:
    """The option letter an output chooses, or None (used by fixed-mode ICL.ManyShot).

    Same scheme as En.MultiChoice (leading letter, else the letter after an "answer is" /
    "answer:" phrase), generalised to BBH answers: any capital letter (tracking-seven-objects has
    options up to (G)) and parentheses or brackets around it. In order: (1) a leading option marker
    - "(B)", "[B]", "B)", "B.", "B:", "B" alone, or "B" followed by a space and anything but a
    lower-case letter; (2) the first "answer is X" / "answer: X" / "option is X" (prefix
    case-insensitive, the letter upper-case, optionally bracketed, not followed by a letter); (3)
    the first "(X)" anywhere.
    """
    for pattern in (_LEADING_LETTER, _STATED_LETTER, _BRACKETED_LETTER):
        match = pattern.search(prediction)
        if match:
            return next(group for group in match.groups() if group)
    return None


def gold_option_letter(gold: Any) -> str | None:
    """The letter of a many-shot gold ("(A)" -> "A", "b" -> "B"), or None if it is not an option."""
    match = _GOLD_LETTER.match(str(gold))
    if not match:
        return None
    return next(group for group in match.groups() if group).upper()


def many_shot_fixed(prediction: str, gold: Any) -> float:
    """ICL.ManyShot, fixed: 1.0 iff the option letter the output chooses (`extract_option_letter`)
    is the gold's letter (`gold_option_letter`).

    Fixes the official any-character quirk (`many_shot_official`). If the gold is not an option
    letter (not "(X)" / "X"), falls back to whole-string, case-insensitive containment of the gold
    in the output. A list gold accepts any of its elements.
    """
    golds = list(gold) if isinstance(gold, (list, tuple)) else [gold]
    chosen = extract_option_letter(prediction)
    for one in golds:
        letter = gold_option_letter(one)
        if letter is None:
            text = str(one).strip().upper()
            if text and text in prediction.upper():
                return 1.0
        elif chosen == letter:
            return 1.0
    return 0.0
