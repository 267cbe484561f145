"""How a SGLang server must be started to run a KV method: attention backend, flags, environment.

`full` runs on SGLang's own attention backend (the runtime as it ships: the baseline). Every other
method runs on the `kvm` backend this package registers, which reads the method from the
environment in each server process. FP8 on CUDA uses SGLang's native FP8 KV cache instead.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from flashinfer_ext.plugin import BACKEND_NAME, METHOD_ENV, STATS_ENV


@dataclass(frozen=True)
class ServerSettings:
    attention_backend: str | None  # None: SGLang's default for the device
    extra_args: list[str] = field(default_factory=list)
    env: dict[str, str] = field(default_factory=dict)

    @property
    def uses_plugin(self) -> bool:
        return self.attention_backend == BACKEND_NAME


def parse_methods(specs: tuple[str, ...], method_args: tuple[str, ...]) -> list:
    """Method instances for `--methods a,b` with the shared `--method-arg field=value` settings.

    A setting applies to every method that has the field (and must be valid there); qualified by a
    method's name ("minference.vertical_size=64") it applies to that method alone. A setting no
    method has is an error, so a typo never silently runs the defaults.
    """
    from kvmethods import parse_method
    from kvmethods.registry import has_field

    for arg in method_args:
        if "=" not in arg or not arg.partition("=")[0].strip():
            raise ValueError(f"--method-arg {arg!r} must look like field=value (e.g. budget=2048)")
    methods = []
    for spec in specs:
        mine = [arg for arg in method_args if has_field(spec, arg.partition("=")[0].strip())]
        # A qualified setting wins over a shared one whatever their order (later values override).
        mine.sort(key=lambda arg: "." in arg.partition("=")[0])
        if "+" not in spec:  # a plain method takes its own qualified fields unqualified
            mine = [arg.strip().removeprefix(f"{spec.strip()}.") for arg in mine]
        methods.append(parse_method(spec, mine))
    for arg in method_args:
        fname = arg.partition("=")[0].strip()
        if not any(has_field(spec, fname) for spec in specs):
            owner = fname.rpartition(".")[0]
            parts = {p.strip() for spec in specs for p in spec.split("+")}
            if owner and owner not in parts:
                raise ValueError(f"--method-arg {arg!r}: {owner!r} is not among --methods ({', '.join(specs)})")
            target = next((s for s in specs if owner in s.split("+")), specs[0]) if owner else specs[0]
            parse_method(target, [arg if "+" in target else arg.strip().removeprefix(f"{owner}.")])  # raises the registry's one line, with the field list
    labels = [m.name for m in methods]
    if len(set(labels)) != len(labels):
        raise ValueError(f"--methods names a method twice: {', '.join(labels)}")
    return methods


def server_settings(method, device: str, stats_path: str | None = None, *, native_full: bool = True) -> ServerSettings:
    """Backend, extra launch flags and environment that make a server run `method` on `device`.

    `native_full=False` runs `full` through the plugin too (to check the executor against SGLang's).
    """
    if method.name == "full" and native_full:
        return ServerSettings(attention_backend=None)
    if method.name == "fp8" and device == "cuda":
        return ServerSettings(attention_backend=None, extra_args=["--kv-cache-dtype", "fp8_e4m3"])
    # One extend per context prefill: compression must see the whole context at once. Without a chunk
    # size SGLang sizes its activation reserve from --max-prefill-tokens (16K tokens x 1.5 MB, more
    # than these CPU machines have), so the static memory fraction is given explicitly on CPU.
    args = ["--chunked-prefill-size", "-1"]
    if device == "cpu":
        args += ["--mem-fraction-static", "0.5"]
    else:  # the backend plans per request on the host: no CUDA graphs
        args += ["--disable-cuda-graph"]
    page = _page_size(method)
    if page > 1:
        args += ["--page-size", str(page)]
    env = {METHOD_ENV: json.dumps(method.to_dict())}
    if stats_path:
        env[STATS_ENV] = stats_path
    return ServerSettings(attention_backend=BACKEND_NAME, extra_args=args, env=env)


def _page_size(method) -> int:
    """KIVI's group (radix sharing must not split a quantization group); 1 otherwise.

    SGLang matches radix prefixes in whole pages, so a page size equal to KIVI's group size keeps
    every shared prefix group-aligned.
    """
    kv = getattr(method, "kv", method)
    return kv.group_size if kv.name == "kivi" else 1
