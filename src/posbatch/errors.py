"""The one error tree of posbatch.

Everything posbatch raises on purpose descends from :class:`PosbatchError`.
Foreign exceptions (pyiso8583, cryptography, SQLAlchemy, OS errors) are
translated at the boundary where they enter, so callers only ever catch
these::

    PosbatchError
    ├── DecodeError                  peer sent bytes we cannot read   → 30
    │   └── FrameError               framing: length, TPDU, header    → 30 / drop
    ├── EncodeError                  we tried to build a bad message (our bug)
    ├── MacError                     field 64 does not verify         → A0
    ├── KeyCheckError                a working key's check value differs
    ├── BatchError                   batch-domain rule violated
    │   └── IllegalTransition        a state machine was asked for a move its table forbids
    ├── StorageError                 the database or the journal failed
    │   ├── JournalIntegrityError    the journal's hash chain is broken
    │   └── KekMismatch              the host's keys are sealed under another KEK
    ├── TerminalError                an operation on the terminal cannot proceed
    │   ├── NotSignedOn
    │   ├── HostUnreachable          no answer in time (network); the journal says what to do
    │   └── Declined                 the host answered, and the answer is not 00
    ├── HostError                    host-side configuration / registry problems
    ├── BackOfficeError              the back office refused an action (the message says why)
    │   ├── LoginRefused             wrong name or password, locked, or disabled (one message)
    │   ├── Forbidden                the user's role may not do this
    │   └── NotFound                 no such record within what the user may see
    ├── CatalogError                 products, lots and scans
    │   ├── ScanError                a barcode string that cannot be read
    │   └── CheckoutRefused          a cart line that must not be sold (says why)
    │       └── CatalogChanged       a price or lot changed between the scan and the payment
    ├── ClearingError                fees, trading days, calendars, statements (says why)
    └── ConfigError                  bad settings, bad command-line values
        └── StoreMissingError             a command that never creates found no store there

A peer's bad bytes never escape a server as anything but a DecodeError/MacError
answered with a response code; an unexpected exception there is a bug.

The four wire errors have no base of their own: each is met and answered on
its own (30, A0, a refused sign-on, our bug), never caught as a group.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

__all__ = [
    "BackOfficeError",
    "BatchError",
    "CatalogChanged",
    "CatalogError",
    "CheckoutRefused",
    "ClearingError",
    "ConfigError",
    "Declined",
    "DecodeError",
    "EncodeError",
    "Forbidden",
    "FrameError",
    "HostError",
    "HostUnreachable",
    "IllegalTransition",
    "JournalIntegrityError",
    "KekMismatch",
    "KeyCheckError",
    "LoginRefused",
    "MacError",
    "NotFound",
    "NotSignedOn",
    "PosbatchError",
    "ScanError",
    "StorageError",
    "StoreMissingError",
    "TerminalError",
]


class PosbatchError(Exception):
    """Root of every error posbatch raises on purpose.

    ``shown_ids``: ids the message names that are not card numbers (merchant ids read
    from the store: 15 digits, which the card-number net would mask to 6/4); an error
    line leaves them whole. Set by whoever raises, from what it read, never from what
    was typed.
    """

    shown_ids: frozenset[str] = frozenset()  # also for subclasses with an __init__ of their own

    def __init__(self, *args: object, shown_ids: frozenset[str] = frozenset()) -> None:
        super().__init__(*args)
        self.shown_ids = shown_ids


# --- wire -------------------------------------------------------------------


class DecodeError(PosbatchError):
    """The peer sent bytes that cannot be read as our wire profile.

    ``field`` names the field ("length", "tpdu", "header", "t" for the MTI,
    "p" for the bitmap, "2".."64", or "60.2" for a sub-field) and
    ``position`` the byte offset in the frame body where reading stopped.
    The host answers such a request with response code 30 (format error)
    when it can still tell who sent it, and otherwise drops the frame.
    """

    response_code = "30"

    def __init__(self, reason: str, *, field: str, position: int) -> None:
        super().__init__(f"{reason}: field {field} at byte {position}")
        self.reason = reason
        self.field = field
        self.position = position


class FrameError(DecodeError):
    """The frame around the message is wrong: length prefix, TPDU or header."""


class EncodeError(PosbatchError):
    """We tried to build a message that breaks our own wire profile (a bug)."""

    def __init__(self, reason: str, *, field: str) -> None:
        super().__init__(f"{reason}: field {field}")
        self.reason = reason
        self.field = field


class MacError(PosbatchError):
    """Field 64 is missing or does not match the MAC computed with the MAK."""

    response_code = "A0"


class KeyCheckError(PosbatchError):
    """A working key unwrapped from field 62 does not match its check value."""


# --- batch domain -----------------------------------------------------------


class BatchError(PosbatchError):
    """A rule of the batch domain was violated."""


class IllegalTransition(BatchError):  # noqa: N818 - the name says what happened
    """A state machine was asked for a transition its table does not allow."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: no transition from {state!r} on {event!r}")
        self.machine = machine
        self.state = state
        self.event = event


# --- storage ----------------------------------------------------------------


class StorageError(PosbatchError):
    """The database or the journal failed; nothing was answered on its behalf."""


class StoreBusyError(StorageError):
    """Another process holds the database's write lock, and the caller chose not to wait."""


class JournalIntegrityError(StorageError):
    """The terminal journal's hash chain is broken: rows were damaged or edited."""

    def __init__(self, message: str, *, first_bad_row: int | None = None) -> None:
        super().__init__(message)
        self.first_bad_row = first_bad_row


class KekMismatch(StorageError):  # noqa: N818 - the name says what happened
    """The host store's keys are sealed under another key-encryption key than the one given."""

    def __init__(self, message: str, *, store_kek_id: str) -> None:
        super().__init__(message)
        self.store_kek_id = store_kek_id


# --- terminal ---------------------------------------------------------------


class TerminalError(PosbatchError):
    """An operation on the terminal cannot proceed."""


class NotSignedOn(TerminalError):  # noqa: N818 - the name says what happened
    """The terminal has no working keys: sign on first."""


class HostUnreachable(TerminalError):  # noqa: N818 - the name says what happened
    """No answer from the host in time; the journal records what must follow."""


class Declined(TerminalError):  # noqa: N818 - the name says what happened
    """The host answered with a response code other than 00."""

    def __init__(self, message: str, *, response_code: str) -> None:
        super().__init__(message)
        self.response_code = response_code


# --- host / catalog / config --------------------------------------------------


class HostError(PosbatchError):
    """Host-side registry or configuration problem (not a peer's fault)."""


class CatalogError(PosbatchError):
    """Products, lots and scans."""


class ScanError(CatalogError):
    """A barcode scan string that cannot be read; the message says why."""


class CheckoutRefused(CatalogError):  # noqa: N818 - the name says what happened
    """A cart line that must not be sold; ``reason_zh``/``reason_en`` say why."""

    def __init__(self, reason_en: str, *, reason_zh: str, suggestion: str | None = None) -> None:
        super().__init__(reason_en)
        self.reason_en = reason_en
        self.reason_zh = reason_zh
        self.suggestion = suggestion


class CatalogChange(Protocol):
    """What :class:`CatalogChanged` needs of one change (posbatch.catalog's ``CatalogChange``)."""

    @property
    def message_en(self) -> str: ...

    @property
    def message_zh(self) -> str: ...


class CatalogChanged(CheckoutRefused):
    """The price or a lot of a cart line changed between the scan and the payment."""

    def __init__(self, changes: Sequence[CatalogChange]) -> None:
        super().__init__(
            "the catalog changed since the scan: "
            + "; ".join(change.message_en for change in changes)
            + " — check the cart and confirm again",
            reason_zh="扫描后商品目录已变更："
            + "；".join(change.message_zh for change in changes)
            + "——请核对后重新确认",
        )
        self.changes = list(changes)


class ClearingError(PosbatchError):
    """The merchant's money cannot be computed as asked: a rule or a value is missing or bad."""


class ConfigError(PosbatchError):
    """Bad settings or command-line values; the message says which and why."""


class StoreMissingError(ConfigError):
    """A command that never creates a store found none where it was told to look."""


# --- back office ----------------------------------------------------------------


class BackOfficeError(PosbatchError):
    """The back office refused an action; the message (one line) says why."""


class LoginRefused(BackOfficeError):  # noqa: N818 - the name says what happened
    """A login that did not succeed: the same words whatever the reason (no user probing)."""


class Forbidden(BackOfficeError):  # noqa: N818 - the name says what happened
    """The user's role may not do this."""


class NotFound(BackOfficeError):  # noqa: N818 - the name says what happened
    """No such record within what the user may see (another merchant's is 'not found' too)."""
