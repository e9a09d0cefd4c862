"""asciicast v2: header, events, split UTF-8, digest."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

from gateway.recording import AsciicastRecorder


def test_events_and_split_utf8(tmp_path: Path) -> None:
    path = tmp_path / "r" / "s.cast"
    rec = AsciicastRecorder(path, width=100, height=30, term="xterm", record_input=True, title="t")
    snowman = "☃".encode()
    rec.output(b"hello " + snowman[:1])
    rec.output(snowman[1:] + b"\r\n")
    rec.input(b"ls\r")
    rec.resize(120, 40)
    rec.marker("m1")
    end = rec.close()
    lines = path.read_text().splitlines()
    header = json.loads(lines[0])
    assert header["version"] == 2
    assert (header["width"], header["height"]) == (100, 30)
    events = [json.loads(line) for line in lines[1:]]
    assert "".join(e[2] for e in events if e[1] == "o") == "hello ☃\r\n"
    assert [e[1:] for e in events if e[1] != "o"] == [["i", "ls\r"], ["r", "120x40"], ["m", "m1"]]
    assert end["recording_sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    assert end["recording_size"] == path.stat().st_size
    player = Path(sys.executable).parent / "asciinema"
    played = subprocess.run([str(player), "cat", str(path)], capture_output=True, text=True, check=False)
    assert played.returncode == 0
    assert "hello ☃" in played.stdout


def test_input_not_recorded_when_off(tmp_path: Path) -> None:
    rec = AsciicastRecorder(
        tmp_path / "s.cast", width=80, height=24, term=None, record_input=False, title="t"
    )
    rec.input(b"secret")
    rec.close()
    assert "secret" not in (tmp_path / "s.cast").read_text()
