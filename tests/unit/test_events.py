"""The catalogue: each audit event name and refusal kind written once, described, in the docs' table."""

from __future__ import annotations

import ast
from pathlib import Path

from gateway import metrics
from gateway.events import EVENTS, KINDS, Event, RefusalKind, table

ROOT = Path(__file__).resolve().parents[2]


def test_every_event_and_kind_is_described_and_the_docs_table_is_current() -> None:
    assert set(EVENTS) == set(Event) and set(KINDS) == set(RefusalKind)
    assert (ROOT / "docs" / "AUDIT-EVENTS.md").read_text() == table(), "run: python -m gateway.events"


def test_no_event_name_or_kind_is_written_outside_the_catalogue() -> None:
    names = {str(e) for e in Event} | {str(k) for k in RefusalKind if "-" in k}  # "scp" is also a word
    found = []
    for path in (ROOT / "gateway").rglob("*.py"):
        if path.name == "events.py":
            continue
        tree = ast.parse(path.read_text())
        docstrings = {
            id(node.body[0].value)
            for node in ast.walk(tree)
            if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
            and node.body
            and isinstance(node.body[0], ast.Expr)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and node.value in names and id(node) not in docstrings:
                found.append(f"{path.relative_to(ROOT)}:{node.lineno}: {node.value!r}")
    assert not found, found


def test_metrics_label_every_kind() -> None:
    assert frozenset(RefusalKind) == metrics.KINDS
    assert metrics.kind_label(RefusalKind.APPROVAL) == "approval"
    assert metrics.kind_label("made-up") == "other"
