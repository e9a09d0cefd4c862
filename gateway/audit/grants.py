"""``gateway audit grants``: what a principal was granted at a time, answered from the chain alone.

The primary gateway writes the whole policy as ``policy.snapshot`` records
when it starts (chunks of 50 facts), and every ``policy.reload`` carries the
change as ``+``/``-`` facts (``policy.diff``). Folding them in chain order up
to a time gives the grants in force then, and when each was gained. A reload
that changed more than its record could carry makes the answer incomplete,
and says so.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gateway.events import Event, Record
from gateway.policy.diff import Fact

CHUNK = 50


def snapshot_records(facts: list[Fact], policy: str) -> Iterator[dict[str, Any]]:
    """The ``policy.snapshot`` records for one start: ``part`` of ``parts``."""
    parts = max(1, -(-len(facts) // CHUNK))
    for k in range(parts):
        chunk = facts[k * CHUNK : (k + 1) * CHUNK]
        yield {"policy": policy, "part": k + 1, "parts": parts, "facts": [f.as_list() for f in chunk]}


@dataclass
class Grants:
    """The facts in force, each with the time it was gained."""

    since: dict[Fact, str] = field(default_factory=dict)
    #: what was in force before the snapshot being read (a fact held across a restart keeps its time)
    before: dict[Fact, str] = field(default_factory=dict)
    complete: bool = False
    #: the record that last changed the answer
    last: str = ""

    def apply(self, record: Record) -> None:
        """Fold one record in."""
        event, stamp = record.get("event"), str(record.get("ts", ""))
        if event == Event.POLICY_SNAPSHOT:
            if record.get("part") == 1:
                self.before, self.since, self.complete = self.since, {}, True
            for item in record.get("facts") or []:
                fact = _fact(item)
                if fact is not None:  # in force since it was first gained, across restarts
                    self.since.setdefault(fact, self.before.get(fact, stamp))
            self.last = f"policy.snapshot seq {record.get('seq')}"
        elif event == Event.POLICY_RELOAD and isinstance(record.get("changes"), dict):
            changes = record["changes"]
            for item in changes.get("changes") or []:
                fact = _fact(item[1:]) if isinstance(item, list) and item else None
                if fact is None:
                    continue
                if item[0] == "+":  # gained again while held (each worker records its reload): the first time
                    self.since.setdefault(fact, stamp)
                else:
                    self.since.pop(fact, None)
            self.complete = self.complete and bool(changes.get("complete"))
            self.last = f"policy.reload seq {record.get('seq')}"

    def of(self, principal: str) -> list[tuple[Fact, str]]:
        """*principal*'s facts and when each was gained, by action and target."""
        return sorted((f, t) for f, t in self.since.items() if f.principal == principal)


def _fact(item: object) -> Fact | None:
    if isinstance(item, list) and len(item) == 4 and all(isinstance(x, str) for x in item):
        return Fact(*item)
    return None


def fold(records: Iterable[Record], at: str | None) -> Grants:
    """The grants in force at *at* (an ISO time; None: now), from records in chain order."""
    found = Grants()
    for record in records:
        if at is not None and str(record.get("ts", "")) > at:
            break
        found.apply(record)
    return found
