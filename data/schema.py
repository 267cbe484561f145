"""The row schema of each SCBench config as the hub holds it (`microsoft/SCBench`, split `test`).

Where these facts come from:
- the dataset card's `dataset_info` features
  (https://huggingface.co/datasets/microsoft/SCBench/raw/main/README.md): every config has
  `multi_turns` (a list of turns with `input` and `answer`); `id` (int64) everywhere but
  `scbench_prefix_suffix` and `scbench_vt`; `context` a string everywhere but `scbench_mf` (list of
  int64, whose `answer` is int64 too); `options` (4 strings) on choice_eng turns; `task` on
  many_shot rows and on the turns of the two Mix configs; `code_ratio`, `description`, the
  byte/line offsets, `func`, `name` and `path` on repoqa turns;
- the card at revision d6c33e9, where `scbench_vt` was still `multi_turn_vt`: its rows are
  `index` (int64), `input` (the context, a string), `length` (int64) and `multi_turns` whose
  `answer` is a list of strings; no `context`, no `id`;
- SCBench's runner (microsoft/MInference scbench/, fb56c91): eval_utils.py reads
  `eg["context"] if "context" in eg else eg["input"]` for the string-retrieval, RepoQA, ICL and
  Mix configs (and En.Sum's multi-request prompt), and run_scbench.py reads the rows' `lang` and
  `repo` and a RepoQA turn's `name` (repoqa and repoqa_and_kv) and uses the row's position as `id`.

Each task module declares its config's layout (`TaskSpec.hub_schema`); `hub_row` looks it up.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from data.sample import Sample


@dataclass(frozen=True)
class HubSchema:
    """How one config's rows are laid out on the hub."""

    context_field: str = "context"  # "input" for scbench_vt
    has_id: bool = True
    context_is_list: bool = False  # scbench_mf: the array itself
    row_fields: tuple[str, ...] = ()  # other row features (kept in `Sample.metadata`)
    turn_fields: tuple[str, ...] = ()  # turn features besides input/answer (kept in `Turn.extras`)

    def row(self, sample: Sample, position: int) -> dict[str, Any]:
        """`sample` as a row in this layout: the hub's fields only, by the hub's names.

        `id` is the sample's own when it is a number, else `position`; row and turn fields the hub
        does not have (a generator's seed, a turn's depth) are left out, so the rows load like the
        hub's.
        """
        row: dict[str, Any] = {}
        if self.has_id:
            row["id"] = int(sample.id) if sample.id.isdigit() else position
        row[self.context_field] = _context_value(sample, self)
        row.update({k: sample.metadata[k] for k in self.row_fields if k in sample.metadata})
        row["multi_turns"] = [
            {"input": t.question, "answer": t.answer, **{k: t.extras[k] for k in self.turn_fields if k in t.extras}}
            for t in sample.turns
        ]
        return row


def _context_value(sample: Sample, schema: HubSchema) -> Any:
    if schema.context_is_list:
        try:
            return json.loads(sample.context)  # Math.Find's context is printed as a list
        except json.JSONDecodeError:
            return sample.context
    return sample.context


def hub_row(sample: Sample, config: str, position: int) -> dict[str, Any]:
    """`sample` as a row of `config` (a task's config or name) on the hub (`HubSchema.row`)."""
    from programs.registry import get_task

    return get_task(config).hub_schema.row(sample, position)
