"""What a KV method needs from the SGLang server that runs it: a capability every method declares
(`KVMethod.server_needs(device)`), which `flashinfer_ext.server_settings` turns into launch flags.
No torch here.
"""

from __future__ import annotations

from dataclasses import dataclass

KVM = "kvm"  # this project's attention backend runs the method (flashinfer_ext.plugin)
NATIVE = "native"  # SGLang's own attention backend for the device
BACKENDS = (KVM, NATIVE)

__all__ = ["BACKENDS", "KVM", "NATIVE", "ServerNeeds"]


@dataclass(frozen=True)
class ServerNeeds:
    """backend: "kvm" (the project's backend runs the method) or "native" (SGLang's own attention
    runs it as it ships: full attention, or a method SGLang implements itself);
    kv_cache_dtype: SGLang's `--kv-cache-dtype` for a native method (e.g. "fp8_e4m3"), None: the
    model's;
    page_size: tokens per KV page (SGLang matches radix prefixes in whole pages, so a method whose
    state spans groups of tokens asks for pages of that size);
    whole_prefill: no chunked prefill, so a context's prefill reaches the method in one step (a
    compression or a sparse pattern must see the whole context)."""

    backend: str = KVM
    kv_cache_dtype: str | None = None
    page_size: int = 1
    whole_prefill: bool = True

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise ValueError(f"ServerNeeds.backend must be one of {', '.join(BACKENDS)}, got {self.backend!r}")
        if self.page_size < 1:
            raise ValueError(f"ServerNeeds.page_size must be >= 1, got {self.page_size}")
        if self.kv_cache_dtype is not None and self.backend != NATIVE:
            raise ValueError("ServerNeeds.kv_cache_dtype is SGLang's own KV cache: only with backend 'native'")

    def on_kvm(self) -> ServerNeeds:
        """The same needs on the `kvm` backend (which emulates what SGLang would do natively)."""
        return ServerNeeds(page_size=self.page_size)
