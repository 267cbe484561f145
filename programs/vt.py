"""Retr.MultiHop (`scbench_vt`): RULER variable tracking; each turn asks one chain's variables.
Metric: fraction of gold names in the output (case-insensitive), rounded to 2 places. Official:
a gold stored as a string is iterated character by character; `fixed` takes it as one name.

The gold answer is a list of names; SCBench writes it into the history as a Python list
("['A', 'B']"), the `fixed` prompt style as "A, B". Its hub rows hold the context as `input`, with
`index` and `length` and no `id` (the config's older layout)."""

from data.generators.vt import generate_vt
from data.schema import HubSchema
from programs.metrics.scorers import on_answer
from programs.metrics.text import names_found_fraction
from programs.registry import register_task
from programs.spec import TaskSpec

VT = register_task(
    TaskSpec(
        name="vt",
        config="scbench_vt",
        category="String Retrieval",
        context_template="{context}",
        max_new_tokens=30,
        scorer=on_answer(names_found_fraction, per_character=True),
        fixed_scorer=on_answer(names_found_fraction),
        hub_schema=HubSchema(context_field="input", has_id=False, row_fields=("index", "length")),
        generator=generate_vt,
    )
)
