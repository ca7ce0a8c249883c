"""Errors of sales (allowlists), rooted in one base class; each also inherits the stdlib class it
resembles, as generation/errors.py and chain/errors.py do."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


class SalesError(Exception):
    """Base for the errors of allowlists and the other sale settings."""


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an uploaded allowlist; ``line`` is 1-based, None for the whole file."""

    line: int | None
    message: str

    def __str__(self) -> str:
        return self.message if self.line is None else f"line {self.line}: {self.message}"


class InvalidAllowlist(SalesError, ValueError):
    """An allowlist file that cannot be used as it is; ``problems`` says where and why."""

    def __init__(self, problems: Sequence[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("; ".join(str(p) for p in self.problems))
