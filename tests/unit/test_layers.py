"""The import graph of gateway/: no circle (lazy and type-only imports included), no import upwards.

Layers, lowest first; a module may import its own layer and the ones below.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

LAYERS: list[tuple[str, ...]] = [
    # 0: the ground everything stands on
    ("events", "errors", "shared", "sizes", "textsafe", "safefile", "fdwait", "tasks", "loop", "oplog", "notify",
     "exits", "diskspace", "environment", "command", "settings", "algorithms", "hostkey", "strictmodes",
     "metrics", "limits", "openssh_setup", "channel", "control"),
    # 1: what may be done: policy, keys, requests
    ("policy", "keys", "policy_files", "policy_source", "approvals", "moderation", "authorized_keys", "fleet.down"),
    # 2: the means: the chain, the engine, confinement, recordings, the stored sessions, the door's wire
    ("audit", "docker", "confine", "recording", "evidence", "dispatch.client", "dispatch.wire",
     "dispatch.peers", "dispatch.tickets", "dispatch.stdio", "sshhooks", "sshfast", "fleet", "forwarding",
     "privsep.lockdown", "privsep.link"),
    # 3: the action types
    ("actions",),
    # 4: one session, decided, audited, run and recorded; the runtime it runs in
    ("session", "runtime", "reload", "readiness"),
    # 5: the transports and the server around them
    ("auth", "ssh_channel", "dispatch", "jobs", "server", "supervisor", "workers", "claim", "privsep"),
    # 6: the command line
    ("cli", "entry", "door", "__main__", ""),
]  # fmt: skip


def _modules() -> dict[str, Path]:
    found = {}
    for path in (ROOT / "gateway").rglob("*.py"):
        parts = path.relative_to(ROOT / "gateway").with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


def _imports(path: Path, modules: dict[str, Path]) -> set[str]:
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "gateway":
            base = node.module.removeprefix("gateway").lstrip(".")
            for alias in node.names:
                candidate = f"{base}.{alias.name}".lstrip(".")
                out.add(candidate if candidate in modules else base)
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("gateway.") for a in node.names if a.name.startswith("gateway.")}
    return out


def _layer(module: str) -> int:
    best, level = -1, -1
    for number, prefixes in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, level = len(prefix), number
    return level


def test_every_module_has_a_layer_and_imports_only_downwards() -> None:
    modules = _modules()
    assert not [name for name in modules if _layer(name) < 0], "a module in no layer"
    wrong = []
    for name, path in modules.items():
        for target in _imports(path, modules):
            if target != name and _layer(target) > _layer(name):
                wrong.append(f"{name} (layer {_layer(name)}) imports {target} (layer {_layer(target)})")
    assert not wrong, "\n".join(sorted(wrong))


def test_no_import_circle() -> None:
    modules = _modules()
    graph = {name: _imports(path, modules) - {name} for name, path in modules.items()}
    state: dict[str, int] = {}
    circles = []

    def walk(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                circles.append(" -> ".join([*trail[trail.index(nxt) :], nxt]))
            elif nxt in graph and nxt not in state:
                walk(nxt, [*trail, nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            walk(name, [name])
    assert not circles, "\n".join(circles)
