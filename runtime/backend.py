"""Connecting the frontend to a server: the managed one or an existing `--endpoint`."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass, field

from errors import RuntimeFailure, UsageError
from runtime.chat_template import ChatFormat
from runtime.server import is_healthy


@dataclass
class Connection:
    """A ready frontend backend, plus what the run needs to know about the served model."""

    url: str
    backend: object  # sglang.RuntimeEndpoint
    tokenizer: object  # transformers tokenizer of the served model
    model_path: str
    chat: bool  # whether a chat template is in use
    # The model's chat template as the prompts render it (None: plain text); see programs.prompts.
    chat_format: ChatFormat | None = field(default=None, repr=False)
    context_length: int | None = None  # the served model's context window, as the server reports it
    page_size: int = 1  # tokens per KV page: the radix cache reuses prefixes in whole pages


def model_info(url: str) -> dict:
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/get_model_info", timeout=10) as response:
            return json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as err:
        raise RuntimeFailure(f"cannot reach SGLang server at {url}: {err}") from err


def served_context_length(url: str) -> int | None:
    """The model's context window from the server's OpenAI model list (None when it does not say)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/v1/models", timeout=10) as response:
            cards = json.loads(response.read()).get("data") or []
    except (urllib.error.URLError, OSError, ValueError):
        return None
    length = cards[0].get("max_model_len") if cards and isinstance(cards[0], dict) else None
    return length if isinstance(length, int) and length > 0 else None


def served_page_size(url: str) -> int:
    """The server's KV page size (`--page-size`; 1 when it does not say)."""
    try:
        with urllib.request.urlopen(url.rstrip("/") + "/get_server_info", timeout=10) as response:
            size = json.loads(response.read()).get("page_size")
    except (urllib.error.URLError, OSError, ValueError):
        return 1
    return size if isinstance(size, int) and size > 0 else 1


def load_tokenizer(model_path: str):
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(model_path)
    except OSError as err:
        raise UsageError(f"cannot load the tokenizer of '{model_path}': {str(err).splitlines()[0]}") from err


def connect(url: str, *, chat_template: bool = True, tokenizer_path: str | None = None) -> Connection:
    """A `RuntimeEndpoint` on `url` with the model's own chat template (from its tokenizer), and the
    model's context length.

    `tokenizer_path` overrides where the tokenizer comes from (for a remote server whose model path
    does not exist here).
    """
    if not url.startswith(("http://", "https://")):
        raise UsageError(f"--endpoint {url}: expected an http:// or https:// URL")
    if not is_healthy(url, timeout=10):
        raise RuntimeFailure(f"no healthy SGLang server at {url} (GET /health failed)")
    info = model_info(url)
    model_path = info.get("model_path") or info.get("tokenizer_path")
    tokenizer = load_tokenizer(tokenizer_path or info.get("tokenizer_path") or model_path)

    from sglang.lang.chat_template import register_chat_template

    from runtime.chat_template import chat_format, derive_chat_template
    from runtime.isolation import NamespacedEndpoint

    backend = NamespacedEndpoint(url)  # `for_session(key)` gives each session its own radix namespace
    template = derive_chat_template(tokenizer, name=f"scbench:{model_path}") if chat_template else None
    rendering = chat_format(tokenizer) if template is not None else None
    if template is not None:
        register_chat_template(template)
        backend.chat_template = template  # the frontend's stop strings
    # The programs' `chat=True` renders prompts with the backend's chat format.
    backend.chat_format = rendering
    return Connection(url=url, backend=backend, tokenizer=tokenizer, model_path=model_path, chat=rendering is not None,
                      chat_format=rendering, context_length=served_context_length(url),
                      page_size=served_page_size(url))
