"""Login throttling: failed logins counted per (name, address), per address, per account.

Theory of operation
-------------------
Locking an *account* after a few failures lets anyone who knows a user name — the
operations manager's, say — lock that user out whenever they like, from anywhere. So the
failures of a login (or of the current password on the change-password form) are
counted under three keys (:class:`Key`), each with its own :class:`Rule`:

- ``PAIR`` — one name from one client address: a few failures lock that pair only. A
  stranger's guesses lock the stranger out; the real user, from their own address, is
  not held up.
- ``ADDRESS`` — every name from one client address: password spraying (one password
  tried over many names) stops at the address's limit, whichever names it tries.
- ``ACCOUNT`` — one name from every address: a ceiling high enough that only an attack
  spread over many addresses reaches it; the account is then locked for a bounded time
  (``Rule.lockout``) and the event is written to the audit log for staff to see.

A counter counts the failures of one window (``Rule.window``) from its first failure;
the window over, it starts again. A failure while the key is locked is not counted: a
lock is never extended by the attacker it stops, so it always ends ``lockout`` after it
began. A successful login clears its PAIR counter (not the ADDRESS or ACCOUNT ones: an
attacker's own account must not wash its spraying away).

This module is pure (time is passed in). The store keeps the counters in
``host_login_failures``, bounded: a row whose window and lock are over is deleted, and
PAIR and ADDRESS rows — the ones an attacker cycling names or addresses creates — are
held to :data:`ROWS_MAX`, the oldest going first. ACCOUNT rows exist for existing users
only. IPv6 addresses are counted by their /64 (one host has a whole /64 to cycle through).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from posbatch.backoffice._text import clean_text
from posbatch.serving import address_key

__all__ = [
    "ADDRESS_CHARS_MAX",
    "ROWS_MAX",
    "RULES",
    "Counter",
    "Key",
    "Rule",
    "client_key",
    "failed",
]

ADDRESS_CHARS_MAX: Final = 64
# PAIR and ADDRESS rows kept at most (each ~100 bytes): a flood of new names or addresses
# pushes the oldest out; the ACCOUNT ceiling still holds, whatever is pushed out.
ROWS_MAX: Final = 10_000


class Key(enum.StrEnum):
    PAIR = "pair"  # one name from one address
    ADDRESS = "address"  # every name from one address (password spraying)
    ACCOUNT = "account"  # one name from every address (a distributed attack)


@dataclass(frozen=True, slots=True)
class Rule:
    failures_max: int  # the failure that reaches it locks the key
    window: timedelta  # failures are counted within this time from the first
    lockout: timedelta  # how long the key stays locked


RULES: Final[dict[Key, Rule]] = {
    Key.PAIR: Rule(5, timedelta(minutes=15), timedelta(minutes=15)),
    Key.ADDRESS: Rule(20, timedelta(minutes=15), timedelta(minutes=15)),
    Key.ACCOUNT: Rule(100, timedelta(hours=1), timedelta(minutes=15)),
}


@dataclass(frozen=True, slots=True)
class Counter:
    failures: int  # within the window that began at window_start
    window_start: datetime
    locked_until: datetime | None

    def locked(self, now: datetime) -> bool:
        return self.locked_until is not None and self.locked_until > now

    def expires_at(self, rule: Rule) -> datetime:
        """When the row means nothing any more (its window and its lock are over)."""
        end = self.window_start + rule.window
        return end if self.locked_until is None else max(end, self.locked_until)


def failed(counter: Counter | None, rule: Rule, now: datetime) -> tuple[Counter, bool]:
    """The counter after one more failure at ``now``, and whether that failure locked it.

    A locked counter is returned unchanged (not counted, the lock not extended).
    """
    if counter is not None and counter.locked(now):
        return counter, False
    if counter is None or counter.window_start + rule.window <= now:
        counter = Counter(0, now, None)
    failures = counter.failures + 1
    if failures >= rule.failures_max:
        return Counter(0, now, now + rule.lockout), True
    return Counter(failures, counter.window_start, None), False


def client_key(address: str) -> str:
    """The address as counted: an IPv6 address by its /64, anything else as it is
    (bounded to ADDRESS_CHARS_MAX characters, a card number in it masked: a proxy's
    X-Forwarded-For is not always an address, and the users page lists these)."""
    key = address_key(address)
    return clean_text(address, ADDRESS_CHARS_MAX) if key is None else key
