"""``sessions export --html``: one self-contained HTML evidence file that plays in any browser.

Everything is inline: asciinema's own web player (``gateway/assets``, vendored
from npm with its license), its stylesheet, each recording, each session's
audit records. A Content-Security-Policy forbids every network request (no
``connect-src``, ``img-src`` or anything else beyond inline script and style
and the player's WebAssembly), so the file opens from disk and can reach
nothing. The chain's verification result and each recording's SHA-256 are
computed when the file is made. The file also carries the tar bundle itself
(base64 in a ``<script type="application/gzip">`` element that never runs), so
``gateway audit verify --bundle FILE.html`` checks the very file Charlotte
hands over, and the page offers the bundle as a download.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
from datetime import UTC, datetime
from importlib import resources
from pathlib import Path
from typing import Any

from gateway.evidence.index import Index
from gateway.evidence.query import QueryError, checked_id, show
from gateway.textsafe import keys

CSP = (
    "default-src 'none'; script-src 'unsafe-inline' 'wasm-unsafe-eval'; style-src 'unsafe-inline'; "
    "img-src data:; font-src data:; base-uri 'none'; form-action 'none'"
)
SUMMARY_FIELDS = (
    ("principal", "who"),
    ("action", "what"),
    ("target", "target"),
    ("container", "container id"),
    ("image", "image"),
    ("start", "started"),
    ("end", "ended"),
    ("exit_status", "exit status"),
    ("signal", "signal"),
    ("bytes_in", "bytes in"),
    ("bytes_out", "bytes out"),
    ("peer", "from"),
)


def _asset(name: str) -> str:
    return resources.files("gateway").joinpath("assets", "asciinema-player", name).read_text(encoding="utf-8")


def _script_json(value: Any) -> str:
    """JSON safe inside a <script> element."""
    return json.dumps(value).replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _summary(index: Index, session: str, events: list[dict[str, Any]]) -> dict[str, Any]:
    row = index.db.execute("SELECT * FROM sessions WHERE id = ?", (session,)).fetchone()
    summary: dict[str, Any] = dict(row) if row is not None else {}
    for event in events:
        for key in ("image", "peer", "container"):
            if event.get(key) and not summary.get(key):
                summary[key] = event[key]
    return summary


def _recording(state: Path, session: str, name: str) -> dict[str, Any]:
    path = state / name
    raw = path.read_bytes() if path.is_file() else b""
    return {
        **decoded(raw),
        "config": player_config(session, name, raw),
        "name": name,
        "present": path.is_file(),
        "sha256": hashlib.sha256(raw).hexdigest() if path.is_file() else None,
    }


def decoded(raw: bytes) -> dict[str, Any]:
    """What the page shows of a recording's bytes: the cast text, its typed input and its length."""
    text = raw.decode("utf-8", "replace")
    typed: list[tuple[float, str]] = []
    duration = 0.0
    for line in text.splitlines()[1:]:
        try:
            stamp, code, data = json.loads(line)
        except ValueError:
            continue
        duration = max(duration, float(stamp))
        if code == "i":
            typed.append((float(stamp), str(data)))
    return {"cast": text, "typed": typed, "duration": duration}


def player_config(session: str, name: str, raw: bytes) -> dict[str, Any]:
    """Exactly what the player is given for recording *name* of *session* (verify recomputes it)."""
    shown = decoded(raw)
    markers = [[stamp, f"typed: {keys(data.strip()[:40])}"] for stamp, data in shown["typed"] if data.strip()]
    return {
        "session": session,
        "name": name,
        "cast": shown["cast"],
        "markers": markers,
        "duration": shown["duration"],
    }


def _session_section(
    index: Index, state: Path, session: str, number: int
) -> tuple[str, list[dict[str, Any]]]:
    events = show(index, session)
    channel = session.split(".", 1)[1] if "." in session else "1"
    mine = [e for e in events if str(e.get("channel", "1")) == channel or e.get("channel") is None]
    summary = _summary(index, session, events)
    names = sorted({str(e["recording"]) for e in mine if e.get("recording")})
    recordings = [_recording(state, session, name) for name in names]
    rows = "".join(
        f"<tr><th>{html.escape(label)}</th><td>{html.escape(str(summary.get(key, '-')))}</td></tr>"
        for key, label in SUMMARY_FIELDS
        if summary.get(key) is not None
    )
    records = "".join(
        f"<tr><td>{html.escape(str(e.get('seq')))}</td><td>{html.escape(str(e.get('ts')))}</td>"
        f"<td>{html.escape(str(e.get('event')))}</td><td><code>{html.escape(_fields(e))}</code></td></tr>"
        for e in events
    )
    players = "".join(_player(r, f"player-{number}-{i}") for i, r in enumerate(recordings))
    body = (
        f'<section class="session" id="session-{html.escape(session)}">'
        f'<h2>Session {html.escape(session)}</h2><table class="summary">{rows}</table>'
        f"{players or '<p>No recording for this session (the action is recorded by size and digest).</p>'}"
        '<h3>Audit records, in time order</h3><table class="records"><tr><th>seq</th><th>time</th>'
        f"<th>event</th><th>fields</th></tr>{records}</table></section>"
    )
    return body, recordings


def _fields(event: dict[str, Any]) -> str:
    skip = {"seq", "ts", "event", "mac", "prev"}
    return " ".join(f"{k}={json.dumps(v)}" for k, v in sorted(event.items()) if k not in skip)


def _player(recording: dict[str, Any], element: str) -> str:
    typed = "".join(
        f"<tr><td>{stamp:.3f}s</td><td><code>{html.escape(keys(data))}</code></td></tr>"
        for stamp, data in recording["typed"]
    )
    digest = recording["sha256"] or "missing"
    typed_table = (
        '<h4>Typed input (kept apart from the output)</h4><table class="typed">'
        f"<tr><th>at</th><th>input</th></tr>{typed}</table>"
        if typed
        else "<p>No typed input was recorded.</p>"
    )
    return (
        f'<div class="recording"><h3>Recording <code>{html.escape(recording["name"])}</code></h3>'
        f"<p>SHA-256 when this file was made: <code>{digest}</code></p>"
        f'<div class="player" id="{element}"></div>'
        f"<script>{CAST_PREFIX}{element}{CAST_MIDDLE}{_script_json(recording['config'])};</script>{typed_table}</div>"
    )


PAGE_STYLE = """
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; }
th, td { border: 1px solid #ccc; padding: 2px 8px; text-align: left; vertical-align: top; font-size: 13px; }
table.records code, table.typed code { white-space: pre-wrap; word-break: break-all; }
.verdict { padding: 0.5em 1em; border: 2px solid; display: inline-block; }
.ok { border-color: #2a7; } .bad { border-color: #c33; }
.player { max-width: 1000px; margin: 0.5em 0; }
footer { margin-top: 3em; font-size: 13px; color: #555; }
"""

#: how each player's data is written into the page (``audit verify --bundle`` reads it back)
CAST_PREFIX = 'window.GATEWAY_CASTS = window.GATEWAY_CASTS || {}; window.GATEWAY_CASTS["'
CAST_MIDDLE = '"] = '

#: the element that carries the bundle; ``audit verify --bundle`` finds it by this id
BUNDLE_ID = "gateway-bundle"

OFFER_BUNDLE = """
const carried = document.getElementById("gateway-bundle");
const link = document.getElementById("gateway-bundle-link");
if (carried && link) {
  const raw = atob(carried.textContent.trim());
  const bytes = new Uint8Array(raw.length);
  for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
  link.href = URL.createObjectURL(new Blob([bytes], { type: "application/gzip" }));
}
"""

START_PLAYERS = """
for (const [element, config] of Object.entries(window.GATEWAY_CASTS || {})) {
  AsciinemaPlayer.create({ data: config.cast }, document.getElementById(element), {
    markers: config.markers, poster: "npt:" + config.duration, fit: "width", idleTimeLimit: 2
  });
}
"""


def fixed_scripts() -> tuple[str, ...]:
    """The page's scripts besides each player's data: verify accepts these and nothing else."""
    return (OFFER_BUNDLE, _asset("asciinema-player.min.js"), START_PLAYERS)


def render(index: Index, state: Path, sessions: list[str], verdict: tuple[bool, str], bundle: bytes) -> str:
    """The whole evidence file for *sessions*, carrying their tar *bundle*."""
    for session in sessions:  # every id is checked before anything is read
        checked_id(session)
    sections, digests = [], []
    for number, session in enumerate(sessions):
        body, recordings = _session_section(index, state, session, number)
        sections.append(body)
        digests += [(r["name"], r["sha256"] or "missing") for r in recordings]
    ok, text = verdict
    verdict_class = "ok" if ok else "bad"
    made = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    digest_rows = "".join(
        f"<tr><td><code>{html.escape(n)}</code></td><td><code>{d}</code></td></tr>" for n, d in digests
    )
    ids = " ".join(html.escape(s) for s in sessions)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="{CSP}">
<meta name="referrer" content="no-referrer">
<title>Gateway evidence: {ids}</title>
<style>{_asset("asciinema-player.css")}</style><style>{PAGE_STYLE}</style>
</head><body>
<h1>Gateway session evidence</h1>
<p>Made {made} for session(s) {ids}.</p>
<p class="verdict {verdict_class}">Audit chain, verified when this file was made: {html.escape(text)}</p>
<h3>Recordings and their SHA-256</h3><table><tr><th>recording</th><th>SHA-256</th></tr>{digest_rows}</table>
{"".join(sections)}
<footer>
<p>This page is a readable view. The evidence is the bundle it carries
(<a id="gateway-bundle-link" download="bundle.tar.gz" href="#">bundle.tar.gz</a>, also inside this file).
To check it independently, on any machine, run
<code>gateway audit verify --bundle THIS-FILE.html --key K0</code> (the initial key K_0, kept off the host),
or
<code>--pubkey checkpoint.pub</code> with the checkpoint public key alone (the same works on the
<code>bundle.tar.gz</code>): it checks every record, link and checkpoint, that the export's own record in the
chain names exactly these sessions, and every recording against the digest in its <code>session.end</code>
record.</p>
<p>Player: asciinema-player {html.escape(_asset("VERSION").strip())} (Apache-2.0), inlined; this page makes no
network request (its Content-Security-Policy forbids them).</p>
</footer>
<script type="application/gzip" id="{BUNDLE_ID}">{base64.b64encode(bundle).decode()}</script>
<script>{OFFER_BUNDLE}</script>
<script>{_asset("asciinema-player.min.js")}</script>
<script>{START_PLAYERS}</script>
</body></html>
"""


def chain_verdict(state: Path) -> tuple[bool, str]:
    """The chain's verification now, as (intact, words)."""
    from gateway.audit.verify import verify  # noqa: PLC0415

    key_file = state / "audit" / "initial.key"
    if not key_file.is_file():
        return (
            False,
            "not verified here: the initial key K_0 is not on this host (verify the tar bundle with it)",
        )
    from gateway.audit.checkpoint import load_public  # noqa: PLC0415

    public_file = state / "audit" / "checkpoint.pub"
    try:
        public = load_public(public_file) if public_file.is_file() else None
        report = verify(state / "audit", bytes.fromhex(key_file.read_text().strip()), public)
    except (OSError, ValueError) as exc:
        raise QueryError(f"cannot verify the chain: {exc}") from exc
    if report.intact:
        return True, f"intact ({report.summary()})"
    return False, f"{report.kind} at {report.where}: {report.detail}"
