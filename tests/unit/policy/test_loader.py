"""The loader: every problem at file:line:column, all of them, with what was expected."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from gateway.keys import load_keys
from gateway.policy import Policy
from gateway.policy.models import BackupAction, ShellAction, SignalAction
from gateway.policy_files import load_policy
from tests.unit.policy.conftest import Write


def test_the_repo_example_is_valid(examples: Path) -> None:
    policy = load_policy(examples / "policies", load_keys(examples / "keys"))
    assert {"debug", "memory", "restart", "hup", "logs", "backup"} <= set(policy.actions)
    debug = policy.actions["debug"]
    assert isinstance(debug, ShellAction)
    assert debug.command == ("/bin/sh",)
    assert debug.allow_args
    assert isinstance(policy.actions["hup"], SignalAction)
    assert isinstance(policy.actions["backup"], BackupAction)


def test_defaults(write: Write, load: Callable[[], Policy]) -> None:
    write("a.yaml", "version: 1\nactions:\n  sh: {type: shell}\n")
    spec = load().actions["sh"]
    assert isinstance(spec, ShellAction)
    assert (spec.command, spec.allow_args) == (("/bin/sh",), False)


def test_unknown_key(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", """\
        version: 1
        actions:
          debug:
            type: shell
            comand: [sh]
        """)  # fmt: skip
    (problem,) = problems()
    assert problem.startswith("a.yaml:5:5: ")
    assert "unknown key 'comand'" in problem
    assert "command" in problem  # what was expected


def test_unknown_type(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions:\n  x:\n    type: telnet\n")
    (problem,) = problems()
    assert problem.startswith("a.yaml:4:11: ")
    assert "unknown action type 'telnet'" in problem
    assert "shell, host, sidekick" in problem


def test_missing_type(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions:\n  x: {command: [ls]}\n")
    (problem,) = problems()
    assert problem.startswith("a.yaml:3:6: ")
    assert "missing key 'type'" in problem


def test_wrong_version(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 2\n")
    (problem,) = problems()
    assert problem.startswith("a.yaml:1:10: version")


def test_bad_yaml(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions: [\n  - a\n  b: c\n")
    (problem,) = problems()
    assert problem.startswith("a.yaml:")
    assert "invalid YAML" in problem


def test_duplicate_key_in_one_file(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "a.yaml",
        "version: 1\nactions:\n  x: {type: host, command: [ls]}\n  x: {type: host, command: [ls]}\n",
    )
    assert problems() == ["a.yaml:4:3: duplicate key 'x'"]


def test_duplicate_action_across_files(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions:\n  x: {type: host, command: [ls]}\n")
    write("b.yaml", "version: 1\nactions:\n\n  x: {type: host, command: [id]}\n")
    (problem,) = problems()
    assert problem.startswith("b.yaml:4:3: ")
    assert "already defined at" in problem
    assert "a.yaml:3" in problem


def test_grant_unknown_action_and_principal(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", """\
        version: 1
        actions:
          sh: {type: shell}
        grants:
          - principals: [betty, mallory]
            actions: [sh, nope]
            targets: ["web*"]
        """)  # fmt: skip
    found = problems()  # mallory has no key: a warning, not an error (see below)
    assert len(found) == 1
    assert found[0].startswith("a.yaml:6:19: ")
    assert "unknown action 'nope'" in found[0]
    assert "sh" in found[0]


def test_a_principal_without_a_key_is_a_warning(write: Write, load: Callable[[], Policy]) -> None:
    write("a.yaml", """\
        version: 1
        actions:
          sh: {type: shell}
        grants:
          - principals: [betty, mallory]
            actions: [sh]
            targets: ["web*"]
        """)  # fmt: skip
    warnings = [str(w) for w in load().warnings]
    assert any(w.endswith("a.yaml:5:25: grants[0]: warning: no key for principal 'mallory' "
                          "(keys/mallory.pub): it cannot log in") for w in warnings), warnings  # fmt: skip


def test_target_rules(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", """\
        version: 1
        actions:
          sh: {type: shell}
          mem: {type: host, command: [free]}
        grants:
          - principals: [betty]
            actions: [sh]
          - principals: [betty]
            actions: [mem]
            targets: [web1]
        """)  # fmt: skip
    found = problems()
    assert len(found) == 2
    assert found[0].startswith("a.yaml:7:15: ")
    assert "needs targets" in found[0]
    assert found[1].startswith("a.yaml:10:14: ")
    assert "takes no targets" in found[1]


def test_all_problems_in_all_files_are_reported(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions:\n  x: {type: nope}\n  y: {type: shell, bogus: 1}\n")
    write("b.yaml", "version: 1\nextra: true\n")
    found = problems()
    assert [p.split(": ")[0] for p in found] == ["a.yaml:3:13", "a.yaml:4:20", "b.yaml:2:1"]


def test_bad_signal_and_paths(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "a.yaml",
        "version: 1\nactions:\n  s: {type: signal, signal: NOPE}\n  b: {type: backup, paths: [data]}\n",
    )
    found = problems()
    assert found[0].startswith("a.yaml:3:29: ")
    assert "unknown signal" in found[0]
    assert found[1].startswith("a.yaml:4:29: ")


def test_bad_action_name(write: Write, problems: Callable[[], list[str]]) -> None:
    write("a.yaml", "version: 1\nactions:\n  'Bad Name': {type: shell}\n")
    (problem,) = problems()
    assert problem.startswith("a.yaml:3:3: ")


def test_grant_where_is_file_and_line(write: Write, load: Callable[[], Policy], policy_dir: Path) -> None:
    write(
        "a.yaml",
        "version: 1\nactions:\n  m: {type: host, command: [ls]}\ngrants:\n  - principals: [dan]\n    actions: [m]\n",
    )
    (grant,) = load().grants
    assert grant.where == f"{policy_dir}/a.yaml:5"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"=", "invalid YAML"),
        (b"version: 1\nactions: !!python/object:os.system {}\n", "invalid YAML"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_fuzzer_findings_are_problems_not_crashes(
    policy_dir: Path, content: bytes, expected: str, problems: Callable[[], list[str]]
) -> None:
    (policy_dir / "a.yaml").write_bytes(content)
    (problem,) = problems()
    assert problem.startswith("a.yaml:")
    assert expected in problem


def test_help_needs_no_definition_and_no_grant(write: Write, load: Callable[[], Policy]) -> None:
    """`ssh help@HOST` answers every principal with a key, with only their own grants."""
    from gateway.policy import Allow, Request, decide  # noqa: PLC0415

    write("a.yaml", "version: 1\nactions:\n  m: {type: host, command: [free]}\n")
    policy = load()
    allowed = decide(policy, Request("eve", "help"))
    assert isinstance(allowed, Allow) and allowed.spec.kind == "help"
    assert not isinstance(decide(policy, Request("eve", "help", args=("x",))), Allow)


def test_an_approval_rule_naming_nobody_is_an_error(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "a.yaml",
        """\
        version: 1
        groups:
          security: [betty]
        actions:
          m: {type: host, command: [free]}
        grants:
          - principals: [dan]
            actions: [m]
            approval: [{from: [nosuchgroup], count: 1}, {from: [security, "@nope"], count: 1}]
            moderated: {by: [zed]}
        """,
    )
    found = problems()
    heads = [p.split(": grants[0]: ")[0] + " " + p.split(": grants[0]: ")[1].split(":")[0] for p in found]
    assert heads == [
        "a.yaml:9:24 unknown group or principal 'nosuchgroup'",
        "a.yaml:9:67 unknown group '@nope' (groups",
        "a.yaml:10:22 unknown group or principal 'zed'",
    ], found


def test_one_path_style_and_no_library_prefixes(write: Write, problems: Callable[[], list[str]]) -> None:
    write(
        "a.yaml",
        """\
        version: 1
        actions:
          m: {type: host, command: [free]}
          s: {type: signal, signal: NOPE}
        grants:
          - {principals: [dan], actions: [m]}
          - {principals: [dan], actions: [m], principles: [x]}
        """,
    )
    found = problems()
    assert any("grants[1].principles: unknown key 'principles'" in p for p in found), found
    assert not any("Value error, " in p or "grants.1" in p for p in found), found
