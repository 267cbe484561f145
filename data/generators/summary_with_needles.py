"""Mix.Sum+NIAH: documents with labelled pass-key sentences between them; summary and pass-key turns alternate.

Turn 1, 3, 5, ... ask for a summary of one document (extras task="scbench_summary", gold = the
document's reference summary); turns 2, 4, ... ask for one pass key (extras task="scbench_passkey",
gold = the key as a string). Each needle carries a label ("the amber pass key") so every pass-key
question has exactly one answer even though the context holds several keys.

The context is "Document k:" blocks; to reach a token budget the documents are cycled (document
k + len(documents) repeats document k). Callers can pass their own `documents` and `summaries`; by
default three short original papers shipped here are used.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

from data.generators.sizing import check_sizes, largest_fitting
from data.sample import Sample, Turn

SUMMARY_QUESTION = "Summarize document {k} above in a few sentences."
PASSKEY_QUESTION = "What is the {label} pass key hidden in the documents above? The {label} pass key is"
NEEDLE = "The {label} pass key is {key}. Remember it. {key} is the {label} pass key."
LABELS = (
    "amber", "cobalt", "crimson", "olive", "violet", "silver", "scarlet", "indigo",
    "ivory", "teal", "saffron", "maroon", "copper", "jade", "lilac", "umber",
)

DOCUMENTS = (
    (
        "Measuring Frost Heave on Gravel Roads with Low-Cost Tilt Sensors\n\n"
        "Gravel roads in cold regions lift and settle every winter as water in the soil freezes into lenses "
        "of ice. Road crews usually learn about the damage only after the spring thaw, when ruts and soft "
        "patches appear. We built a sensor post from a plastic pipe, a hobby-grade accelerometer and a "
        "solar-charged logger, at a parts cost of about forty dollars, and planted thirty posts along an "
        "eleven-kilometre forest road. Each post records its tilt every ten minutes; because the posts are "
        "anchored below the frost line, a change in tilt reflects uneven movement of the surface layer. "
        "Over two winters the posts detected heave events an average of nine days before crews reported "
        "visible damage, and the size of the tilt change predicted the depth of the ruts that followed "
        "(correlation 0.71). Posts in shaded, north-facing cuts moved three times more than posts on open "
        "embankments. Battery failures were the main weakness: a quarter of the loggers stopped during the "
        "longest cold spell. We conclude that cheap tilt posts can give maintenance crews a useful early "
        "warning, provided that the power supply is made more robust to long periods without sun.",
        "The paper presents a forty-dollar sensor post (pipe, accelerometer, solar logger) for detecting frost "
        "heave on gravel roads. Thirty posts on an eleven-kilometre road detected heave about nine days before "
        "crews saw damage, and tilt change predicted rut depth (r = 0.71). Shaded north-facing sections moved "
        "most. Battery failures in long cold spells were the main weakness, so the power supply needs work.",
    ),
    (
        "Queue Behaviour and Customer Patience at Village Bakeries\n\n"
        "Small bakeries sell most of their bread in a short morning rush, and a long queue can turn "
        "customers away. We observed four village bakeries for six weeks, timing 2,340 arrivals and noting "
        "whether each customer joined the queue, waited, or left. We also varied two things in agreement "
        "with the owners: on some days a second staff member took orders from the back of the queue, and on "
        "some days a board near the door showed which loaves were already sold out. Customers who could see "
        "more than seven people ahead of them left in 18 percent of cases, compared with 4 percent when the "
        "queue was shorter. Taking orders from the back of the queue cut the average wait from six minutes "
        "to just under four and halved the share of customers who left. The sold-out board had a smaller "
        "effect on leaving but reduced the time spent at the counter, because fewer customers asked for "
        "bread that was no longer available. Regular customers were far more patient than visitors. The "
        "findings suggest that a cheap change in how orders are taken matters more to a small shop than "
        "adding counter space.",
        "The study timed 2,340 arrivals at four village bakeries over six weeks. Customers facing more than "
        "seven people ahead left 18 percent of the time versus 4 percent for shorter queues. Taking orders "
        "from the back of the queue cut waits from six to under four minutes and halved walk-outs; a "
        "sold-out board mainly shortened counter time. Regulars were more patient than visitors, and changing "
        "how orders are taken mattered more than adding counter space.",
    ),
    (
        "Pollinator Visits to Rooftop Gardens Over One Summer\n\n"
        "Rooftop gardens are often promoted as habitat for bees and other pollinators, but few studies "
        "have counted visits above the fourth floor. We planted identical trays of lavender, borage, "
        "oregano and marigold on twelve roofs between two and fourteen storeys high and recorded every "
        "insect that landed on a flower during ten-minute watches, three times a week from June to "
        "September. In total we logged 6,912 visits. Honeybees made up just over half of all visits and "
        "were found at every height, while bumblebees and hoverflies became rare above the eighth floor. "
        "Visit rates fell by roughly a third for every four extra storeys, but wind speed explained the "
        "decline better than height alone: sheltered trays on tall buildings did almost as well as "
        "exposed trays on low ones. Borage attracted the most visits overall and marigold the fewest. "
        "We recommend that rooftop gardens meant for pollinators be placed behind parapets or screens, "
        "and that planners do not assume that a green roof of any height supports the same insects as a "
        "garden at street level.",
        "Identical flower trays on twelve roofs (two to fourteen storeys) were watched from June to September, "
        "logging 6,912 insect visits. Honeybees, over half of visits, appeared at all heights, while bumblebees "
        "and hoverflies became rare above the eighth floor. Visits fell about a third per four storeys, but "
        "wind shelter explained this better than height. Borage drew the most visits. The authors recommend "
        "sheltering rooftop gardens and not assuming tall green roofs match street-level gardens.",
    ),
)


def _labels(n: int) -> list[str]:
    return [LABELS[i % len(LABELS)] + ("" if i < len(LABELS) else f"-{i // len(LABELS) + 1}") for i in range(n)]


def needle_positions(num_needles: int, num_docs: int) -> list[int]:
    """Where each needle goes: position p means just before document p (p = num_docs: after the last)."""
    return [round((i + 1) / (num_needles + 1) * num_docs) for i in range(num_needles)]


def swn_context(documents: Sequence[str], num_docs: int, needles: list[str]) -> str:
    """`num_docs` documents (cycled) with the needle sentences spread over the gaps between them."""
    by_gap: dict[int, list[str]] = {}
    for p, needle in zip(needle_positions(len(needles), num_docs), needles):
        by_gap.setdefault(p, []).append(needle)
    blocks = []
    for k in range(num_docs + 1):
        blocks.extend(by_gap.get(k, []))
        if k < num_docs:
            blocks.append(f"Document {k + 1}:\n{documents[k % len(documents)]}")
    return "\n\n".join(blocks)


def generate_summary_with_needles(
    count_tokens: Callable[[str], int],
    *,
    num_samples: int,
    context_tokens: int,
    num_turns: int,
    seed: int,
    documents: Sequence[str] | None = None,
    summaries: Sequence[str] | None = None,
) -> list[Sample]:
    check_sizes(num_samples, num_turns)
    if (documents is None) != (summaries is None):
        raise ValueError("pass documents and summaries together")
    if documents is None:
        documents = [text for text, _ in DOCUMENTS]
        summaries = [summary for _, summary in DOCUMENTS]
    assert summaries is not None
    if not documents or len(documents) != len(summaries):
        raise ValueError("documents and summaries must be non-empty and of equal length")
    rng = random.Random(seed)
    kinds = ["scbench_summary" if t % 2 == 0 else "scbench_passkey" for t in range(num_turns)]
    num_needles = max(1, kinds.count("scbench_passkey"))
    labels = _labels(num_needles)
    samples = []
    for index in range(num_samples):
        keys = [str(k) for k in rng.sample(range(10000, 100000), num_needles)]
        needles = [NEEDLE.format(label=label, key=key) for label, key in zip(labels, keys)]
        n = largest_fitting(lambda k: swn_context(documents, k, needles), count_tokens, context_tokens, start=2)
        context = swn_context(documents, n, needles)
        if count_tokens(context) > context_tokens:
            raise ValueError(f"context_tokens={context_tokens} cannot hold one document and {num_needles} needles")
        # Summary turns ask distinct documents (as far as the context holds distinct ones), each at the
        # copy nearest to an evenly spread depth; turn order is random. The i-th pass-key turn asks
        # the i-th needle.
        n_sum = kinds.count("scbench_summary")
        present = min(len(documents), n)
        doc_order = list(range(present))
        rng.shuffle(doc_order)
        asked = []
        for i in range(n_sum):
            d, depth = doc_order[i % present], int((i + 0.5) / n_sum * n)
            asked.append(min(range(d, n, len(documents)), key=lambda k: abs(k - depth)))
        rng.shuffle(asked)
        turns = []
        for kind in kinds:
            if kind == "scbench_summary":
                k = asked.pop()
                turns.append(
                    Turn(
                        question=SUMMARY_QUESTION.format(k=k + 1),
                        answer=summaries[k % len(documents)],
                        extras={"task": kind},
                    )
                )
            else:
                i = sum(1 for t in turns if t.extras["task"] == "scbench_passkey")
                turns.append(Turn(question=PASSKEY_QUESTION.format(label=labels[i]), answer=keys[i], extras={"task": kind}))
        samples.append(
            Sample(
                id=f"summary_with_needles-{seed}-{index}",
                context=context,
                turns=tuple(turns),
                metadata={"num_documents": n, "num_needles": num_needles, "seed": seed, "synthetic": True},
            )
        )
    return samples
