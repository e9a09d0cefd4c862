"""One query grammar: the host's command line and the SSH audit action take the same options."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from gateway.actions.audit import parse
from gateway.cli import main
from gateway.errors import Refusal
from gateway.evidence.grammar import VERBS, filters


@pytest.mark.parametrize("verb", sorted(VERBS))
def test_every_option_exists_on_both_sides(verb: str) -> None:
    shown = CliRunner().invoke(main, ["sessions", verb, "--help"]).output
    words = ["sessions", verb] + (["x"] if verb == "grep" else [])
    for option in VERBS[verb]:
        assert option.flag in shown
        given = [option.flag] if option.is_flag else [option.flag, "1d" if "since" in option.flag else "v"]
        parse((*words, *given))  # the audit action's parser takes it too


def test_the_values_become_the_same_filters() -> None:
    args = parse(("sessions", "list", "--since", "2h", "--principal", "betty", "--target", "web1"))
    made = filters(vars(args))
    assert (made.principal, made.target, made.action) == ("betty", "web1", None)
    assert made.since is not None and made.since.endswith("Z")
    with pytest.raises(Refusal):
        parse(("sessions", "list", "--exec", "id"))
