"""``sessions list --collected DIR``: the sessions of every host a syslog collector holds.

Each host's collected chain (duplicates dropped, in seq order) is indexed in
memory with the same code as a state directory's, and queried with the same
filters; every row gains the host's name.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from gateway.audit import store
from gateway.audit.collected import files, hosts, unique_lines
from gateway.events import Record, as_record
from gateway.evidence import query
from gateway.evidence.index import Index


def local_records(state: Path) -> Iterator[Record]:
    """A state directory's own chain, record by record, in order."""
    for path in store.log_files(state / "audit"):
        with path.open(encoding="utf-8", errors="replace") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    record = as_record(json.loads(line))
                    if record is not None:
                        yield record


def host_records(directory: Path) -> Iterator[Record]:
    """One host's records from a collector's files, in seq order."""
    return _records(directory)


def _records(directory: Path) -> Iterator[Record]:
    by_seq, _, _ = unique_lines(files(directory))
    for seq in sorted(by_seq):
        record = as_record(json.loads(by_seq[seq]))
        if record is not None:
            yield record


def list_fleet(collected: Path, filters: query.Filters) -> list[dict[str, Any]]:
    """Every host's sessions matching *filters*, oldest first, each with its ``host``."""
    rows: list[dict[str, Any]] = []
    for directory in hosts(collected):
        if filters.host is not None and directory.name != filters.host:
            continue
        index = Index(directory, in_memory=True)
        try:
            index.add_records(_records(directory))
            one_host = dataclasses.replace(filters, host=None)  # each directory is one host's
            rows += [{"host": directory.name, **row} for row in query.list_sessions(index, one_host)]
        finally:
            index.close()
    return sorted(rows, key=lambda row: (str(row.get("start")), row["host"]))


def fleet_table(rows: list[dict[str, Any]]) -> str:
    """The table: the host column, then ``sessions list``'s own."""
    header = ("host", *query.COLUMNS)
    cells = [header]
    for row in rows:
        duration = "-" if row.get("duration") is None else f"{row['duration']:.1f}s"
        if row.get("state") != "ended":
            outcome = str(row.get("state"))
        elif row.get("signal"):
            outcome = f"sig {row['signal']}"
        else:
            outcome = str(row.get("exit_status"))
        cells.append(
            (
                row["host"],
                row["id"],
                str(row.get("start", ""))[:19].replace("T", " "),
                duration,
                row.get("principal") or "-",
                row.get("action") or "-",
                row.get("target") or "-",
                (row.get("container") or "-")[:12],
                outcome,
                f"{row.get('bytes_in') or 0}/{row.get('bytes_out') or 0}",
                f"{row['request']} by {row.get('approvers') or '-'}" if row.get("request") else "-",
            )
        )
    return query.render(cells)
