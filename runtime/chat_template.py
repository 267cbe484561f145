"""The model's own chat template, for the prompts and for the frontend.

`ChatFormat` renders message lists with the tokenizer's `apply_chat_template`, exactly as SCBench's
runner does: the programs build every prompt piece from such renderings (default system block,
`| trim`, BOS and all), so the text sent is the text `apply_chat_template` produces.

`derive_chat_template` gives SGLang's frontend an equivalent `ChatTemplate` (role prefixes and
suffixes found by rendering sentinel messages). The programs no longer write roles with it; the
frontend still takes its stop strings from it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

_S, _U, _A = "\x01SYS\x01", "\x01USR\x01", "\x01AST\x01"


@dataclass(frozen=True, eq=False)
class ChatFormat:
    """A tokenizer's chat template, rendered to text (`tokenizer.chat_template` must be set)."""

    tokenizer: Any

    def render(self, messages: list[dict[str, str]], add_generation_prompt: bool = True) -> str:
        return self.tokenizer.apply_chat_template(messages, add_generation_prompt=add_generation_prompt, tokenize=False)

    @property
    def repeated_bos(self) -> str | None:
        """The BOS text the template writes, when the tokenizer also adds BOS on encode (else None):
        such a prompt starts with two BOS tokens once the server tokenizes it."""
        bos, bos_id = getattr(self.tokenizer, "bos_token", None), getattr(self.tokenizer, "bos_token_id", None)
        if not bos or bos_id is None:
            return None
        added = self.tokenizer("x")["input_ids"]
        return bos if added and added[0] == bos_id else None


def chat_format(tokenizer) -> ChatFormat | None:
    """The tokenizer's chat format, or None when it has no chat template (plain-text prompts)."""
    return ChatFormat(tokenizer) if getattr(tokenizer, "chat_template", None) else None


def _render(tokenizer, messages, add_generation_prompt=False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def _between(text: str, start: str, end: str) -> str:
    i = text.index(start) + len(start)
    return text[i : text.index(end, i)]


def derive_chat_template(tokenizer, name: str):
    """A `sglang.lang.chat_template.ChatTemplate` equivalent to `tokenizer.chat_template`.

    Returns None when the tokenizer has no chat template (the programs then run in plain-text mode).
    """
    from sglang.lang.chat_template import ChatTemplate

    if not getattr(tokenizer, "chat_template", None):
        return None
    full = _render(tokenizer, [
        {"role": "system", "content": _S},
        {"role": "user", "content": _U},
        {"role": "assistant", "content": _A},
    ])
    system_prefix = full[: full.index(_S)]
    system_suffix_and_user_prefix = _between(full, _S, _U)
    user_suffix_and_assistant_prefix = _between(full, _U, _A)
    assistant_suffix = full[full.index(_A) + len(_A) :]

    # The generation prompt is the assistant prefix: split "user suffix + assistant prefix" there.
    head_messages = [{"role": "system", "content": _S}, {"role": "user", "content": _U}]
    without_prompt = _render(tokenizer, head_messages)
    with_prompt = _render(tokenizer, head_messages, add_generation_prompt=True)
    assistant_prefix = with_prompt[len(without_prompt) :] if with_prompt.startswith(without_prompt) else ""
    user_suffix = user_suffix_and_assistant_prefix.removesuffix(assistant_prefix)
    if user_suffix + assistant_prefix != user_suffix_and_assistant_prefix:
        # Templates that render the turn boundary differently with a generation prompt.
        user_suffix, assistant_prefix = user_suffix_and_assistant_prefix, ""
    # A user message ends the same way the system one does in the templates we know (ChatML,
    # Llama-3); so the user prefix is what follows the system suffix.
    system_suffix = user_suffix
    if system_suffix_and_user_prefix.startswith(system_suffix):
        user_prefix = system_suffix_and_user_prefix[len(system_suffix) :]
    else:
        system_suffix, user_prefix = system_suffix_and_user_prefix, ""

    # The system prompt a template inserts when the conversation has none.
    bare = _render(tokenizer, [{"role": "user", "content": _U}])
    head = bare[: bare.index(_U)]
    default_system = None
    if head.startswith(system_prefix) and head.endswith(system_suffix + user_prefix) and len(head) > len(system_prefix + system_suffix + user_prefix):
        default_system = head[len(system_prefix) : len(head) - len(system_suffix + user_prefix)]

    stop = assistant_suffix.strip()
    return ChatTemplate(
        name=name,
        default_system_prompt=default_system,
        role_prefix_and_suffix={
            "system": (system_prefix, system_suffix),
            "user": (user_prefix, user_suffix),
            "assistant": (assistant_prefix, assistant_suffix),
        },
        stop_str=(stop,) if stop else (),
    )
