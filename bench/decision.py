"""Figure 7: one policy decision with 10,000 grants, p50 and p99 in microseconds."""

from __future__ import annotations

import json
import random
import time
from typing import Any

from gateway.policy.compiled import CompiledGrant, Policy, Target, TargetMatcher
from gateway.policy.engine import Request, decide
from gateway.policy.models import ShellAction


def build(grants: int) -> Policy:
    """*grants* grants over 100 principals, 10 actions, globs on names."""
    actions = {f"a{i}": ShellAction(type="shell") for i in range(10)}
    compiled = tuple(
        CompiledGrant(
            principals=frozenset({f"p{i % 100}"}),
            actions=frozenset({f"a{i % 10}"}),
            targets=(TargetMatcher.glob(f"web{i}-*"), TargetMatcher.glob(f"db{i}")),
            where=f"bench.yaml:{i}",
        )
        for i in range(grants)
    )
    return Policy.build(actions, compiled, "bench")


def run(grants: int = 10_000, decisions: int = 50_000) -> dict[str, Any]:
    """Time each decision; report percentiles."""
    policy = build(grants)
    rng = random.Random(7)  # noqa: S311 - reproducible load, not cryptography
    requests = [
        Request(f"p{rng.randrange(100)}", f"a{rng.randrange(10)}", Target(f"web{rng.randrange(grants)}-x"))
        for _ in range(decisions)
    ]
    samples = []
    for request in requests:
        start = time.perf_counter_ns()
        decide(policy, request)
        samples.append(time.perf_counter_ns() - start)
    samples.sort()
    p50, p99 = samples[len(samples) // 2] / 1000, samples[int(len(samples) * 0.99)] / 1000
    return {
        "grants": grants,
        "decisions": decisions,
        "p50_us": round(p50, 2),
        "p99_us": round(p99, 2),
        "target_p99_us": 50,
    }


if __name__ == "__main__":
    print(json.dumps(run(), indent=2))
