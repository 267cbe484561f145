"""The frontend chat template derived from a tokenizer reproduces `apply_chat_template` exactly."""

from __future__ import annotations

import pytest

from runtime.chat_template import derive_chat_template

LLAMA3 = (
    "{{ bos_token }}{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] + '<|eot_id|>' }}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
)

CONVERSATION = [
    {"role": "user", "content": "Read this.\n\nctx\n\nQ1"},
    {"role": "assistant", "content": "A1"},
    {"role": "user", "content": "Q2"},
]


def frontend_prompt(template, messages):
    """What the SGLang frontend writes for `messages` then an open assistant turn."""
    prefix_messages = [{"role": "system", "content": None}] + messages
    return template.get_prompt(prefix_messages) + template.role_prefix_and_suffix["assistant"][0]


@pytest.fixture()
def llama3_tokenizer(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = LLAMA3
    return tok


def test_chatml_with_default_system_prompt(tiny_tokenizer):
    template = derive_chat_template(tiny_tokenizer, "t")
    assert template.default_system_prompt == "You are a tiny test model."
    assert template.role_prefix_and_suffix["user"] == ("<|im_start|>user\n", "<|im_end|>\n")
    assert template.stop_str == ("<|im_end|>",)
    want = tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert frontend_prompt(template, CONVERSATION) == want


def test_llama3_style_template(llama3_tokenizer):
    template = derive_chat_template(llama3_tokenizer, "t")
    assert template.default_system_prompt is None
    want = llama3_tokenizer.apply_chat_template(
        [{"role": "system", "content": "S"}] + CONVERSATION, tokenize=False, add_generation_prompt=True
    )
    got = template.get_prompt([{"role": "system", "content": "S"}] + CONVERSATION) + template.role_prefix_and_suffix["assistant"][0]
    assert got == want


def test_no_chat_template_means_plain_text(tiny_tokenizer):
    import copy

    tok = copy.deepcopy(tiny_tokenizer)
    tok.chat_template = None
    assert derive_chat_template(tok, "t") is None


def test_chat_format_renders_what_apply_chat_template_renders(tiny_tokenizer, llama3_tokenizer):
    from runtime.chat_template import ChatFormat, chat_format

    fmt = chat_format(tiny_tokenizer)
    assert fmt.render(CONVERSATION) == tiny_tokenizer.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    assert fmt.render(CONVERSATION, add_generation_prompt=False).endswith("Q2<|im_end|>\n")
    assert fmt.repeated_bos is None  # the tiny tokenizer adds no BOS on encode
    import copy

    plain = copy.deepcopy(tiny_tokenizer)
    plain.chat_template = None
    assert chat_format(plain) is None
    assert ChatFormat(llama3_tokenizer).render([{"role": "user", "content": "x"}]).startswith(llama3_tokenizer.bos_token)


def test_repeated_bos_is_found_when_the_tokenizer_adds_bos(tiny_tokenizer):
    from runtime.chat_template import ChatFormat
    from tests.chat_formats import with_template

    assert ChatFormat(with_template(tiny_tokenizer, "llama3.1")).repeated_bos == "<|begin_of_text|>"
    assert ChatFormat(with_template(tiny_tokenizer, "qwen2.5")).repeated_bos is None
