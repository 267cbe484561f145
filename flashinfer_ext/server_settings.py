"""How a SGLang server must be started to run a KV method: attention backend, flags, environment.

What a method needs is its own capability (`method.server_needs(device)`, see
`kvmethods.server_needs`): `full` runs on SGLang's own attention backend (the runtime as it ships:
the baseline), FP8 on CUDA on SGLang's native FP8 KV cache; every other method runs on the `kvm`
backend this package registers, which reads the method from the environment in each server process.
This module turns those needs into launch flags.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from discovery import plugin_env
from flashinfer_ext.plugin import BACKEND_NAME, METHOD_ENV, STATS_ENV
from kvmethods.server_needs import NATIVE


@dataclass(frozen=True)
class ServerSettings:
    attention_backend: str | None  # None: SGLang's default for the device
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def uses_plugin(self) -> bool:
        return self.attention_backend == BACKEND_NAME


def server_settings(method, device: str, stats_path: str | None = None, *, kvm_always: bool = False) -> ServerSettings:
    """Backend, extra launch flags and environment that make a server run `method` on `device`.

    `kvm_always` runs a method SGLang could run natively (`full`, FP8 on CUDA) on the `kvm` backend
    too (to check the executor against SGLang's). The environment carries `SCBENCH_PLUGINS` when it
    is set, so the server processes find a plugin's method.
    """
    needs = method.server_needs(device)
    if kvm_always:
        needs = needs.on_kvm()
    args: list[str] = []
    if needs.backend == NATIVE:
        if needs.kv_cache_dtype:
            args += ["--kv-cache-dtype", needs.kv_cache_dtype]
        if needs.page_size > 1:
            args += ["--page-size", str(needs.page_size)]
        return ServerSettings(attention_backend=None, extra_args=args, env=plugin_env())
    if needs.whole_prefill:
        # One extend per context prefill. Without a chunk size SGLang sizes its activation reserve
        # from --max-prefill-tokens (16K tokens x 1.5 MB, more than these CPU machines have), so the
        # static memory fraction is given explicitly on CPU.
        args += ["--chunked-prefill-size", "-1"]
        if device == "cpu":
            args += ["--mem-fraction-static", "0.5"]
    if device != "cpu":  # the backend plans per request on the host: no CUDA graphs
        args += ["--disable-cuda-graph"]
    if needs.page_size > 1:  # SGLang matches radix prefixes in whole pages
        args += ["--page-size", str(needs.page_size)]
    env = {**plugin_env(), METHOD_ENV: json.dumps(method.to_dict())}
    if stats_path:
        env[STATS_ENV] = stats_path
    return ServerSettings(attention_backend=BACKEND_NAME, extra_args=args, env=env)
