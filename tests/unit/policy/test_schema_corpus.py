"""The exported JSON Schema and `gateway policy check` give the same verdict, file by file.

The schema is checked with the real `check-jsonschema` (the tool editors' users
run), the policy with the real `gateway policy check`, over a corpus of good
and bad files (tests/unit/policy/schema_corpus).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
CORPUS = Path(__file__).parent / "schema_corpus"
FILES = sorted(CORPUS.glob("*/*.yaml"))


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("schema") / "policy.schema.json"
    exported = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "schema"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    path.write_text(exported.stdout)
    return path


def _checker_ok(file: Path, tmp_path: Path) -> bool:
    policies = tmp_path / "policies"
    policies.mkdir()
    shutil.copy(file, policies / file.name)
    checked = subprocess.run(
        [sys.executable, "-m", "gateway", "policy", "check", "--policies", str(policies), "--keys", str(ROOT / "keys")],
        capture_output=True, text=True, cwd=ROOT, check=False,
    )  # fmt: skip
    assert "Traceback" not in checked.stderr
    return checked.returncode == 0


def _schema_ok(file: Path, schema: Path) -> bool:
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--schemafile", str(schema), str(file)], capture_output=True, text=True, check=False
    )
    assert done.returncode in (0, 1), done.stdout + done.stderr
    return done.returncode == 0


@pytest.mark.parametrize("file", FILES, ids=[f"{f.parent.name}/{f.name}" for f in FILES])
def test_same_verdict(file: Path, schema: Path, tmp_path: Path) -> None:
    expected = file.parent.name == "good"
    assert _checker_ok(file, tmp_path) is expected
    assert _schema_ok(file, schema) is expected


def test_one_typo_one_error(schema: Path) -> None:
    """A typo in one action's key is reported at that action only (an unknown key, and so the missing
    one), not once per action type as with a discriminated oneOf."""
    checker = Path(sys.executable).parent / "check-jsonschema"
    done = subprocess.run(
        [str(checker), "--schemafile", str(schema), "-o", "json", str(CORPUS / "bad" / "action_key_typo.yaml")],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    errors = json.loads(done.stdout)["errors"]
    assert {e["path"] for e in errors} == {"$.actions.memory"}, errors
    assert len(errors) <= 2 and "comand" in json.dumps(errors)


def test_no_validator_ignored_keywords(schema: Path) -> None:
    assert "discriminator" not in schema.read_text()
    assert "ipvanynetwork" not in schema.read_text()
