"""The query grammar, once: the filters and flags of ``sessions list`` and ``sessions grep``.

The host's command line (click) and the SSH ``audit`` action (a strict
argparse) are both built from these, and both turn the values into
``query.Filters`` with ``filters()``; a filter added here exists on both.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from gateway.evidence import query


@dataclass(frozen=True)
class Option:
    """One ``--name VALUE`` filter, or a ``--name`` flag."""

    flag: str
    help: str
    is_flag: bool = False

    @property
    def dest(self) -> str:
        """The keyword it arrives as: ``--input-only`` -> ``input_only``."""
        return self.flag.removeprefix("--").replace("-", "_")


TIME = "1d, 2h, 30m, or an ISO time."
FILTERS = (
    Option("--since", f"Started at or after: {TIME}"),
    Option("--until", f"Started before: {TIME}"),
    Option("--principal", "Whose sessions."),
    Option("--action", "Which action."),
    Option("--target", "Which target."),
)
#: one host's sessions: where several hosts' are listed (a fleet over SSH, or a collector's files)
HOST = Option("--host", "One host's sessions (a fleet's index over SSH, or --collected).")
JSON = Option("--json", "One JSON object per line.", is_flag=True)
INPUT_ONLY = Option("--input-only", "Only what was typed, not the output.", is_flag=True)
#: each query verb's options, in order
VERBS: dict[str, tuple[Option, ...]] = {
    "list": (*FILTERS, HOST, JSON),
    "grep": (*FILTERS, INPUT_ONLY, JSON),
}


def filters(values: Mapping[str, object]) -> query.Filters:
    """The filters among *values* (by dest) as ``query.Filters``; QueryError for a bad time."""
    text = {o.dest: str(values[o.dest]) if values.get(o.dest) else None for o in FILTERS}
    return query.Filters(
        since=query.parse_time(text["since"]) if text["since"] else None,
        until=query.parse_time(text["until"]) if text["until"] else None,
        principal=text["principal"],
        action=text["action"],
        target=text["target"],
        host=str(values[HOST.dest]) if values.get(HOST.dest) else None,
    )
