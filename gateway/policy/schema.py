"""The policy's JSON Schema, made for JSON Schema validators (editors, check-jsonschema).

pydantic's own schema describes the action union with ``oneOf`` and a
``discriminator`` keyword that validators ignore, so one typo yields an error
from every branch. Here each action is checked with ``if``/``then`` on its
``type`` (a ``const``), so a validator reports the one branch that applies.
Signal names, networks and times are patterns that match what the loader
accepts (the same patterns, from ``models``).
"""

from __future__ import annotations

from typing import Any

from gateway.policy import models

ACTION_REF = "#/$defs/{name}"


def _action_union(action_names: dict[str, str]) -> dict[str, Any]:
    """One action: an object whose ``type`` picks the definition it must satisfy."""
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(action_names)}},
        "allOf": [
            {
                "if": {"properties": {"type": {"const": kind}}, "required": ["type"]},
                "then": {"$ref": ACTION_REF.format(name=definition)},
            }
            for kind, definition in sorted(action_names.items())
        ],
    }


def policy_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one policy file."""
    document = models.policy_file_model().model_json_schema(by_alias=True)
    kinds = {word: model.__name__ for word, model in models.ACTION_REGISTRY.items()}
    actions = document["properties"]["actions"]
    pattern = next(iter(actions["patternProperties"]))
    actions["patternProperties"][pattern] = _action_union(kinds)
    document["$schema"] = "https://json-schema.org/draft/2020-12/schema"
    document["title"] = "gateway policy (version 1)"
    return document
