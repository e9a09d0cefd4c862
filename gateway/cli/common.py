"""What every command group shares: the `main` group, the common options, failing and printing."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from gateway.errors import LoadError

if TYPE_CHECKING:
    from gateway.evidence.index import Index
    from gateway.policy import Policy
    from gateway.settings import Settings

policies_option = click.option(
    "--policies",
    type=click.Path(path_type=Path),
    default=Path("policies"),
    show_default=True,
    help="Policy directory.",
)
keys_option = click.option(
    "--keys",
    type=click.Path(path_type=Path),
    default=Path("keys"),
    show_default=True,
    help="Key directory (NAME.pub).",
)
state_option = click.option(
    "--state",
    type=click.Path(path_type=Path),
    default=Path("state"),
    show_default=True,
    help="State directory.",
)


def fail(message: str, status: int = 2) -> None:
    """Exit statuses everywhere: 0 success or allow, 1 deny or a failed check, 2 usage errors."""
    click.echo(message, err=True)
    sys.exit(status)


def emit_json(value: Any) -> None:
    """One JSON document on stdout (every query's --json)."""
    import json  # noqa: PLC0415

    click.echo(json.dumps(value, sort_keys=True, default=str))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="gateway")
def main() -> None:
    """A restricted SSH gateway for Docker hosts."""


def duration_param(value: str) -> int:
    from gateway.sizes import parse_duration  # noqa: PLC0415

    try:
        return parse_duration(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def size_param(value: str | None) -> int | None:
    from gateway.sizes import parse_size  # noqa: PLC0415

    if value is None:
        return None
    try:
        return parse_size(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


def settings_of(**values: Any) -> Settings:
    from gateway.settings import Settings  # noqa: PLC0415 - pydantic: only where needed

    return Settings(**values)


def load_policy(policies: Path, keys: Path) -> Policy:
    from gateway.runtime import load_snapshot  # noqa: PLC0415

    try:
        return load_snapshot(settings_of(policies=policies, keys=keys))[1]
    except LoadError as exc:
        fail(str(exc), 1)
        raise


def problem_json(problem: Any) -> dict[str, Any]:
    return {"file": problem.file, "line": problem.line, "column": problem.column, "message": problem.message}


def read_k0(state: Path, key: Path | None) -> bytes:
    path = key or state / "audit" / "initial.key"
    try:
        return bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError):
        fail(f"gateway: cannot read the initial key {path} (pass --key FILE)")
        raise


@contextlib.contextmanager
def open_index(state: Path) -> Iterator[Index]:
    from gateway.evidence.index import Index  # noqa: PLC0415

    if not (state / "audit").is_dir():
        fail(f"gateway: no audit log under {state}")
    index = Index(state)
    try:
        index.catch_up()
        yield index
    finally:
        index.close()
