"""Code blocks of the Markdown docs: the helpers the doc tests share, and checks that every block is sound.

``test_docs_tutorial`` and ``test_docs_plugins`` import ``blocks``, ``write_files`` and ``import_file``
from here to run the docs' code, so that ``docs/*.md`` can never go stale.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

import pytest

__all__ = ["DOCS", "Block", "blocks", "import_file", "write_files"]

DOCS = Path(__file__).resolve().parents[1] / "docs"

_FENCE = re.compile(r"^(?P<indent>[ ]*)```(?P<lang>\w+)(?P<info>[^\n]*)\n(?P<body>.*?)^(?P=indent)```", re.M | re.S)


@dataclass(frozen=True)
class Block:
    """One fenced block: its language, its ``file=`` name (empty when it names none) and its text."""

    lang: str
    file: str
    text: str


def blocks(doc: str) -> list[Block]:
    """Every fenced code block of ``docs/<doc>``, in order."""
    out = []
    for m in _FENCE.finditer((DOCS / doc).read_text(encoding="utf-8")):
        info = dict(part.split("=", 1) for part in m["info"].split() if "=" in part)
        indent = len(m["indent"])
        text = "".join(line[indent:] for line in m["body"].splitlines(keepends=True))
        out.append(Block(m["lang"], info.get("file", ""), text))
    return out


def write_files(doc: str, directory: Path) -> dict[str, Path]:
    """Write every block that names a file into ``directory``; return the paths by file name."""
    written = {}
    for block in blocks(doc):
        if block.file:
            path = directory / block.file
            path.write_text(block.text, encoding="utf-8")
            written[block.file] = path
    return written


def import_file(path: Path, name: str) -> ModuleType:
    """Import a written example as module ``name`` (removed from ``sys.modules`` again by the caller)."""
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


DOC_FILES = sorted(p.name for p in DOCS.glob("*.md"))


@pytest.mark.parametrize("doc", DOC_FILES)
def test_every_python_and_toml_block_of_the_docs_parses(doc: str) -> None:
    for block in blocks(doc):
        if block.lang == "python":
            ast.parse(block.text, filename=f"{doc}:{block.file or 'snippet'}")
        elif block.lang == "toml":
            tomllib.loads(block.text)


@pytest.mark.parametrize("doc", DOC_FILES)
def test_files_named_by_a_doc_are_named_once(doc: str) -> None:
    names = [b.file for b in blocks(doc) if b.file]

    assert len(names) == len(set(names))


def test_the_docs_have_code_to_run() -> None:
    assert {"writing-a-strategy.md", "plugins.md"} <= set(DOC_FILES)
    assert [b.file for b in blocks("plugins.md") if b.file] == ["wide_spread.py", "walk_venue.py",
                                                                 "instant_executor.py"]
