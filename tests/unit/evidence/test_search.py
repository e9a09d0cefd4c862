"""A large search on every core: the helpers find what one process finds, in order, and stop with the client."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway.evidence import search
from gateway.evidence.grep import Compiled, compile_pattern
from gateway.evidence.query import QueryError


def _recordings(directory: Path, count: int, events: int) -> list[dict[str, Any]]:
    """*count* recordings; the word ``needle`` in every 500th output event and in some typed input, and a
    line cut between two events (``nee`` / ``dle``) in each."""
    rows = []
    for k in range(count):
        path = directory / f"{k:02d}.cast"
        lines = [json.dumps({"version": 2, "width": 80, "height": 24})]
        for n in range(events):
            word = "needle" if n % 500 == 7 else "hay"
            lines.append(json.dumps([n * 0.01, "o", f"{word} {k} {n}\x1b[1m é\r\n"]))
            if n % 900 == 3:
                lines.append(json.dumps([n * 0.01 + 0.001, "i", "echo needle\r"]))
        lines += [
            json.dumps([events * 0.01, "o", "nee"]),
            json.dumps([events * 0.01 + 1, "o", "dle end\r\n"]),
        ]
        path.write_text("\n".join(lines) + "\n")
        rows.append(
            {"id": f"s{k}", "recording": path.name, "principal": "dan", "start": f"2026-12-0{k % 9 + 1}"}
        )
    return rows


def _children() -> set[int]:
    found = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found |= {int(pid) for pid in (task / "children").read_text().split()}
    return found


@pytest.fixture
def small(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(search, "MIN_BYTES", 1)  # helpers for any search of two recordings or more


@pytest.mark.parametrize("input_only", [False, True])
def test_helpers_find_what_one_process_finds_in_order(tmp_path: Path, small: None, input_only: bool) -> None:
    rows = _recordings(tmp_path, 5, 3000)
    pattern = compile_pattern(r"\bneedle\b")
    alone = list(search.grep_rows(rows, tmp_path, Compiled(pattern.line, pattern.block),
                                  input_only=input_only))  # fmt: skip  # no source: in this thread
    before = _children()
    shared = list(search.grep_rows(rows, tmp_path, pattern, input_only=input_only))
    assert shared == alone
    assert len({m.session for m in shared}) == 5 and [m.session for m in shared] == sorted(
        m.session for m in shared
    )
    assert any(m.line == "needle end" for m in shared) != input_only  # a match across two events
    assert _children() == before  # every helper waited for


def test_a_stopped_search_ends_at_once_and_kills_its_helpers(tmp_path: Path, small: None) -> None:
    rows = _recordings(tmp_path, 4, 100_000)
    pattern = compile_pattern(r"\Anever-there")  # no block form: line by line, seconds of work
    stop = threading.Event()
    found: list[Any] = []
    worker = threading.Thread(
        target=lambda: found.extend(search.grep_rows(rows, tmp_path, pattern, stop=stop))
    )
    before = _children()
    worker.start()
    time.sleep(0.3)
    assert len(_children() - before) >= 2  # the helpers are searching
    started = time.monotonic()
    stop.set()
    worker.join(5)
    assert not worker.is_alive() and time.monotonic() - started < 0.5
    assert _children() == before and found == []


def test_a_helper_that_dies_is_an_error_not_a_short_answer(tmp_path: Path, small: None) -> None:
    rows = _recordings(tmp_path, 2, 10)
    pattern = compile_pattern("needle")
    pattern.source = "(a)\\1"  # the helper cannot compile it: it exits before writing an answer
    with pytest.raises(search.SearchError, match="run the search again") as caught:
        list(search.grep_rows(rows, tmp_path, pattern))
    assert isinstance(caught.value, QueryError)  # one line, as any query error, over SSH and on the CLI


def test_a_helper_that_cannot_start_is_the_same_one_line(
    tmp_path: Path, small: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _recordings(tmp_path, 2, 10)
    monkeypatch.setattr(search.sys, "executable", str(tmp_path / "no-python"))
    with pytest.raises(search.SearchError, match=r"could not start .*run the search again"):
        list(search.grep_rows(rows, tmp_path, compile_pattern("needle")))
    assert search._SLOTS._value == search._CORES  # type: ignore[attr-defined]  # every core given back


def test_small_searches_and_busy_cores_stay_in_this_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    rows = _recordings(tmp_path, 3, 600)
    pattern = compile_pattern("needle")
    started: list[object] = []
    start = search._start
    monkeypatch.setattr(search, "_start", lambda *args: started.append(args) or start(*args))
    expected = list(search.grep_rows(rows, tmp_path, pattern))
    assert not started  # under MIN_BYTES: this thread
    monkeypatch.setattr(search, "MIN_BYTES", 1)
    assert list(search.grep_rows(rows, tmp_path, pattern)) == expected and len(started) == search._CORES
    started.clear()
    taken = [search._SLOTS.acquire(blocking=False) for _ in range(search._CORES)]
    try:
        assert list(search.grep_rows(rows, tmp_path, pattern)) == expected  # no core free: this thread
        assert not started
    finally:
        for held in taken:
            if held:
                search._SLOTS.release()
