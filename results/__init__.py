"""The run record: what a bench run writes, and every way it is read back.

A sweep directory holds `sweep.json` (a `SweepIndex`) and one folder per point; a point folder holds
`header.json` (a `PointHeader`), `samples.jsonl` (one `TurnRecord` per session turn), `summary.json`,
`contexts/` and `official/`. This package owns those files: their names and writers (`files`), the
typed records (`records`, `headers`), the one reader (`reader`) with its migrations from older
formats (`migrate`), a point's identity (`identity`), and what is made from the records: the
summary, the report and its tables, the figures, the official export, rescoring.

Nothing here imports SGLang, torch or transformers at module level: reading a run needs no server.
"""
