"""The frontend's chat template, derived from the model's own HF chat template.

SGLang's frontend guesses a template from the model path and falls back to a generic
"USER:/ASSISTANT:" one, which is wrong for most local checkpoints. Rendering the tokenizer's Jinja
template with sentinel messages gives each role's exact prefix and suffix (and the default system
prompt templates like SmolLM2's insert), so the programs' `sgl.user(...)` text is the same text
`apply_chat_template` would produce.
"""

from __future__ import annotations

_S, _U, _A = "\x01SYS\x01", "\x01USR\x01", "\x01AST\x01"


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
