"""Stand-in for `tree_sitter_languages.get_language` / `get_parser` on the installed py-tree-sitter.

SCBench's `repo_qa_utils.py` uses the `tree_sitter_languages` package, which needs py-tree-sitter
< 0.22; the project needs >= 0.25, and both cannot be installed side by side. This gives the old
interface the vendored code calls: `get_language(lang).query(source).captures(node)` returns a list
of `(node, capture_name)` in document order (the order the old bindings returned), and
`get_parser(lang)` a parser for the language. Grammars are the per-language `tree-sitter-<lang>`
packages the project installs.
"""

from __future__ import annotations

import importlib

import tree_sitter

# tree_sitter_languages name -> (module, function returning the grammar)
_GRAMMARS = {
    "python": ("tree_sitter_python", "language"),
    "java": ("tree_sitter_java", "language"),
    "typescript": ("tree_sitter_typescript", "language_typescript"),
    "rust": ("tree_sitter_rust", "language"),
    "cpp": ("tree_sitter_cpp", "language"),
    "go": ("tree_sitter_go", "language"),
}


class _Query:
    def __init__(self, language: tree_sitter.Language, source: str):
        self._query = tree_sitter.Query(language, source)

    def captures(self, node: tree_sitter.Node) -> list[tuple[tree_sitter.Node, str]]:
        found = tree_sitter.QueryCursor(self._query).captures(node)
        pairs = [(n, name) for name, nodes in found.items() for n in nodes]
        return sorted(pairs, key=lambda pair: pair[0].start_byte)


class _Language:
    def __init__(self, lang: str):
        module, function = _GRAMMARS[lang]
        self.language = tree_sitter.Language(getattr(importlib.import_module(module), function)())

    def query(self, source: str) -> _Query:
        return _Query(self.language, source)


def get_language(lang: str) -> _Language:
    return _Language(lang)


def get_parser(lang: str) -> tree_sitter.Parser:
    return tree_sitter.Parser(get_language(lang).language)
