"""Check results and how they are reported: a table for people, a JSON document for programs."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

PASS, FAIL, SKIPPED = "PASS", "FAIL", "SKIPPED"


@dataclass
class Check:
    name: str
    status: str
    detail: str

    @property
    def failed(self) -> bool:
        return self.status == FAIL


def passed(name: str, detail: str) -> Check:
    return Check(name, PASS, detail)


def failed(name: str, detail: str) -> Check:
    return Check(name, FAIL, detail)


def skipped(name: str, reason: str) -> Check:
    return Check(name, SKIPPED, reason)


def verdict(checks: Sequence[Check]) -> str:
    failures = [c.name for c in checks if c.failed]
    if failures:
        return f"FAIL: {', '.join(failures)}"
    skipped_count = sum(c.status == SKIPPED for c in checks)
    return f"PASS ({len(checks) - skipped_count} checks passed, {skipped_count} skipped)"


def render_table(token_id: int, checks: Sequence[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = [f"token {token_id}", f"  {'check'.ljust(width)}  {'result':7}  detail"]
    for c in checks:
        lines.append(f"  {c.name.ljust(width)}  {c.status:7}  {c.detail}")
    lines.append(f"  verdict: {verdict(checks)}")
    return "\n".join(lines)


def any_failed(results: Mapping[int, Sequence[Check]]) -> bool:
    return any(c.failed for checks in results.values() for c in checks)


def json_document(
    contract: str, results: Mapping[int, Sequence[Check]], gateways_served: Sequence[str]
) -> dict[str, Any]:
    """The ``--json`` output: the overall verdict, the gateways that served, every check."""
    return {
        "contract": contract,
        "verdict": "FAIL" if any_failed(results) else "PASS",
        "gateways": list(gateways_served),
        "tokens": [
            {"token_id": t, "verdict": verdict(cs), "checks": [asdict(c) for c in cs]}
            for t, cs in results.items()
        ],
    }
