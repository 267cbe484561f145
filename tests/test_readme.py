"""The README's library example runs as written (against the test server)."""

from __future__ import annotations

import re

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.server


def readme_block(heading: str) -> str:
    text = (REPO / "README.md").read_text()
    section = text[text.index(heading):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_library_example(sglang_server, capsys):
    code = readme_block("## Using the programs from other code")
    assert 'connect("http://127.0.0.1:30000")' in code
    exec(compile(code.replace("http://127.0.0.1:30000", sglang_server.url), "README.md", "exec"), {})
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 3  # one line per turn
    assert all(re.search(r"\d+ / \d+$", line) for line in lines)
