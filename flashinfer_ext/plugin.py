"""SGLang plugin: registers the `kvm` attention backend in every SGLang process.

SGLang 0.5.23 calls `load_plugins()` in the launcher, engine, scheduler and detokenizer; it runs
every function registered under the entry-point group `sglang.srt.plugins` (see pyproject.toml).
`register()` adds `kvm` to `--attention-backend`'s choices and to the backend registry. The KV
method and its settings reach the spawned processes through the environment (`SCBENCH_KV_METHOD`,
JSON), written by the managed server from the CLI's `--methods` / `--method-arg`.
"""

from __future__ import annotations

import json
import os

from flashinfer_ext.context_scoring import SCORING_RID_PREFIX

BACKEND_NAME = "kvm"
METHOD_ENV = "SCBENCH_KV_METHOD"
# Where the backend appends one JSON line per request: the fraction of its KV that stayed visible.
STATS_ENV = "SCBENCH_KV_STATS"
# "1": each stats line also lists the visible positions of layer 0, KV head 0 (for tests).
STATS_DETAIL_ENV = "SCBENCH_KV_STATS_DETAIL"
# Requests whose id starts with this only measure (programs.likelihood): the backend never
# compresses or marks anything on them and records no kept-KV line for them.
PROBE_RID_PREFIX = "scbench-gold-probe-"
# Requests whose tokens never enter the radix tree: the gold probes, and a method's scoring pass
# over the context (flashinfer_ext.context_scoring), which sets visibility but leaves no tokens.
SKIP_INSERT_RID_PREFIXES = (PROBE_RID_PREFIX, SCORING_RID_PREFIX)


def method_from_env():
    """The KV method configured for this server (full attention when none is set)."""
    from kvmethods import from_dict, get_method

    raw = os.environ.get(METHOD_ENV)
    return from_dict(json.loads(raw)) if raw else get_method("full")


def register() -> None:
    """Entry point: make `--attention-backend kvm` valid and buildable. Idempotent."""
    from sglang.srt.arg_groups.choices import ATTENTION_BACKEND_CHOICES, add_attention_backend_choices
    from sglang.srt.layers.attention.attention_registry import ATTENTION_BACKENDS, register_attention_backend

    if BACKEND_NAME not in ATTENTION_BACKEND_CHOICES:
        add_attention_backend_choices([BACKEND_NAME])
    if BACKEND_NAME not in ATTENTION_BACKENDS:
        register_attention_backend(BACKEND_NAME)(create_backend)
    keep_probes_out_of_the_radix_tree()


def keep_probes_out_of_the_radix_tree() -> None:
    """A probe request's tokens (prompt + gold answer) never enter the radix tree, so a later turn
    whose prompt continues with the same answer (gold history) cannot reuse the probe's KV: it
    prefills that part itself, as it would have without the probe. The same for a scoring pass's
    reconstruction tokens (`SKIP_INSERT_RID_PREFIXES`). Idempotent."""
    from sglang.srt.managers.schedule_batch import Req

    if getattr(Req.__init__, "_scbench_probe_aware", False):
        return
    original = Req.__init__

    def __init__(self, rid, *args, **kwargs):
        original(self, rid, *args, **kwargs)
        if isinstance(rid, str) and rid.startswith(SKIP_INSERT_RID_PREFIXES):
            self.skip_radix_cache_insert = True

    __init__._scbench_probe_aware = True
    Req.__init__ = __init__


def create_backend(runner):
    """Called by SGLang's model runner with itself; picks the executor for the device."""
    from flashinfer_ext.kvm_backend import KVMethodBackend

    attend = None  # the exact torch executor
    if str(runner.device).startswith("cuda"):
        from flashinfer_ext.flashinfer_executor import attend
    method = method_from_env()
    bind = getattr(method, "for_model", None)  # a method whose settings depend on the served model
    if bind is not None:
        method = bind(runner.model_config.model_path)
    return KVMethodBackend(
        runner,
        method,
        stats_path=os.environ.get(STATS_ENV),
        stats_detail=os.environ.get(STATS_DETAIL_ENV) == "1",
        attend=attend,
    )
