"""Fault scripts: make the host misbehave on purpose, for people testing terminals.

A script is a list of rules; the first rule that matches a request (and still
has count left, and wins its probability draw) acts on it:

- ``drop``: process and commit the request, send no answer (a lost response);
- ``delay``: process, commit, answer after ``delay_ms`` (past the terminal's timeout);
- ``duplicate``: process, commit, send the answer twice;
- ``close``: process, commit, close the connection instead of answering;
- ``force``: do NOT process the request; answer ``response_code`` (77, A0, 94, 96, 68…).

Rules match on ``terminal_id`` (None = any) and ``kind`` (a message kind such
as ``sale``, ``settlement``, ``batch_upload``; None = any). Draws come from a
``random.Random(seed)`` of the script's own, so a script with a seed behaves
the same on every run for the same sequence of requests.

File format (JSON, or TOML with ``[[rules]]``)::

    {"seed": 7, "rules": [
        {"terminal_id": "10000001", "kind": "sale", "action": "drop", "count": 1},
        {"kind": "settlement", "action": "force", "response_code": "96",
         "probability": 0.5}
    ]}
"""

from __future__ import annotations

import enum
import json
import random
import threading
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from posbatch.batch.model import Kind
from posbatch.errors import ConfigError

__all__ = ["DELAY_MS_MAX", "FaultAction", "FaultRule", "FaultScript", "load_fault_script"]

DELAY_MS_MAX: Final = 600_000
RULES_MAX: Final = 1000


class FaultAction(enum.StrEnum):
    DROP = "drop"
    DELAY = "delay"
    DUPLICATE = "duplicate"
    CLOSE = "close"
    FORCE = "force"


@dataclass(frozen=True, slots=True)
class FaultRule:
    action: FaultAction
    terminal_id: str | None = None
    kind: Kind | None = None
    probability: float = 1.0
    count: int | None = None  # how many times it may act; None = always
    delay_ms: int = 0
    response_code: str | None = None

    def __post_init__(self) -> None:
        if not 0.0 <= self.probability <= 1.0:
            raise ConfigError(f"fault probability {self.probability} outside 0..1")
        if self.count is not None and self.count < 0:
            raise ConfigError("fault count must be ≥ 0")
        if not 0 <= self.delay_ms <= DELAY_MS_MAX:
            raise ConfigError(f"delay_ms outside 0..{DELAY_MS_MAX}")
        if self.action == FaultAction.DELAY and self.delay_ms == 0:
            raise ConfigError("a delay rule needs delay_ms")
        if self.action == FaultAction.FORCE and not (
            self.response_code and len(self.response_code) == 2 and self.response_code.isalnum()
        ):
            raise ConfigError("a force rule needs a two-character response_code")

    def matches(self, terminal_id: str, kind: Kind) -> bool:
        return (self.terminal_id is None or self.terminal_id == terminal_id) and (
            self.kind is None or self.kind == kind
        )

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultRule:
        known = {"action", "terminal_id", "kind", "probability", "count", "delay_ms",
                 "response_code"}  # fmt: skip
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"unknown fault rule keys: {sorted(unknown)}")
        try:
            return cls(
                action=FaultAction(data["action"]),
                terminal_id=data.get("terminal_id"),
                kind=Kind(data["kind"]) if data.get("kind") else None,
                probability=float(data.get("probability", 1.0)),
                count=None if data.get("count") is None else int(data["count"]),
                delay_ms=int(data.get("delay_ms", 0)),
                response_code=data.get("response_code"),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise ConfigError(f"bad fault rule {dict(data)!r}: {exc}") from exc


@dataclass
class FaultScript:
    """Rules plus their own seeded draws; thread-safe (the server calls it from a worker)."""

    rules: Sequence[FaultRule] = ()
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)
    _used: list[int] = field(init=False, repr=False)
    _lock: threading.Lock = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if len(self.rules) > RULES_MAX:
            raise ConfigError(f"at most {RULES_MAX} fault rules")
        self.rules = tuple(self.rules)
        self._random = random.Random(self.seed)
        self._used = [0] * len(self.rules)
        self._lock = threading.Lock()

    def pick(self, terminal_id: str, kind: Kind) -> FaultRule | None:
        """The rule that acts on this request, if any (uses up one of its count)."""
        with self._lock:
            for index, rule in enumerate(self.rules):
                if not rule.matches(terminal_id, kind):
                    continue
                if rule.count is not None and self._used[index] >= rule.count:
                    continue
                if rule.probability < 1.0 and self._random.random() >= rule.probability:
                    continue
                self._used[index] += 1
                return rule
        return None

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> FaultScript:
        rules = data.get("rules", [])
        if not isinstance(rules, list):
            raise ConfigError("fault script: 'rules' must be a list")
        return cls([FaultRule.from_mapping(rule) for rule in rules], int(data.get("seed", 0)))


def load_fault_script(path: Path) -> FaultScript:
    """A script from a JSON or TOML file (by its suffix; ``.toml`` is TOML, else JSON)."""
    try:
        text = path.read_text(encoding="utf-8")
        data = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"cannot read fault script {path}: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"fault script {path} must be an object with 'rules'")
    return FaultScript.from_mapping(data)
