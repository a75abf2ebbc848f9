"""Tills allowed to talk to the back office over HTTP, and their credentials.

``catalog serve`` answers only tills it registered: ``posbatch catalog
add-till TERMINAL_ID --output FILE`` issues a credential — a random token
(256 bits) — and writes it, with the back office's identity, to a file
(mode 0600) that goes into the till's terminal directory. The store keeps
only the token's SHA-256. The till sends the token in the ``Authorization:
Bearer`` header of every request (sync and orders); it never appears on a
command line. A token names its till: a till cannot write orders as another
terminal. Reissuing replaces the token; revoking stops it at once.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from posbatch.catalog import _tables as t
from posbatch.catalog._store_base import ACTOR_LENGTH_MAX, StoreBase, checked_text, stored, utc
from posbatch.errors import CatalogError, ConfigError

__all__ = [
    "CREDENTIAL_FILE_NAME",
    "CREDENTIAL_FORMAT",
    "TOKEN_PREFIX",
    "TillCredential",
    "TillInfo",
    "TillsMixin",
    "read_credential",
    "write_credential",
]

CREDENTIAL_FORMAT = "posbatch-till-credential/1"
CREDENTIAL_FILE_NAME = "catalog-till.json"
"""Where a till looks for its credential in its terminal directory."""
TOKEN_PREFIX = "pbt_"  # noqa: S105 - a marker, not a secret
_TOKEN_BYTES = 32
TOKEN_LENGTH_MAX = 100
CREDENTIAL_BYTES_MAX = 4096
TERMINAL_ID_CHARS = 8


@dataclass(frozen=True, slots=True)
class TillCredential:
    terminal_id: str
    store_id: str
    token: str

    def __repr__(self) -> str:
        return (
            f"TillCredential(terminal_id={self.terminal_id!r}, store_id={self.store_id!r}, "
            "token='****')"
        )


@dataclass(frozen=True, slots=True)
class TillInfo:
    terminal_id: str
    issued_at: dt.datetime
    issued_by: str
    revoked_at: dt.datetime | None


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def check_terminal_id(terminal_id: str) -> str:
    if not (
        len(terminal_id) == TERMINAL_ID_CHARS
        and terminal_id.isascii()
        and terminal_id.isprintable()
    ):
        raise CatalogError(
            f"terminal ID {terminal_id!r} must be {TERMINAL_ID_CHARS} printable ascii characters"
        )
    return terminal_id


class TillsMixin(StoreBase):
    """The registry of tills (see the module docstring)."""

    def add_till(
        self, terminal_id: str, *, issued_by: str, at: dt.datetime, reissue: bool = False
    ) -> TillCredential:
        """Register a till (or give it a new token with ``reissue``); returns its credential."""
        check_terminal_id(terminal_id)
        issued_by = checked_text("who", issued_by, ACTOR_LENGTH_MAX)
        token = TOKEN_PREFIX + secrets.token_urlsafe(_TOKEN_BYTES)
        values = {
            "token_sha256": token_digest(token),
            "issued_at": stored(at),
            "issued_by": issued_by,
            "revoked_at": None,
        }
        with self._write() as connection:
            exists = connection.execute(
                sa.select(t.tills.c.terminal_id).where(t.tills.c.terminal_id == terminal_id)
            ).first()
            if exists is not None and not reissue:
                raise CatalogError(
                    f"till {terminal_id} is registered already: --reissue gives it a new "
                    "credential (the old one stops working)"
                )
            if exists is None:
                connection.execute(sa.insert(t.tills).values(terminal_id=terminal_id, **values))
            else:
                connection.execute(
                    sa.update(t.tills).where(t.tills.c.terminal_id == terminal_id).values(**values)
                )
        return TillCredential(terminal_id, self.store_id(), token)

    def revoke_till(self, terminal_id: str, *, at: dt.datetime) -> None:
        """Stop a till's credential at once."""
        with self._write() as connection:
            done = connection.execute(
                sa.update(t.tills)
                .where(t.tills.c.terminal_id == terminal_id, t.tills.c.revoked_at.is_(None))
                .values(revoked_at=stored(at))
            )
        if done.rowcount != 1:
            raise CatalogError(f"till {terminal_id} is not registered (or revoked already)")

    def till_of(self, token: str) -> str | None:
        """The terminal ID whose valid credential ``token`` is (None: no such till)."""
        if not token.startswith(TOKEN_PREFIX) or len(token) > TOKEN_LENGTH_MAX:
            return None
        digest = token_digest(token)
        with self._begin() as connection:
            row = connection.execute(
                sa.select(t.tills).where(t.tills.c.token_sha256 == digest)
            ).first()
        if row is None or row.revoked_at is not None:
            return None
        return str(row.terminal_id)

    def tills(self) -> list[TillInfo]:
        with self._begin() as connection:
            rows = connection.execute(sa.select(t.tills).order_by(t.tills.c.terminal_id)).all()
        return [
            TillInfo(
                row.terminal_id,
                utc(row.issued_at),
                row.issued_by,
                utc(row.revoked_at) if row.revoked_at else None,
            )
            for row in rows
        ]


def write_credential(credential: TillCredential, path: Path, *, overwrite: bool = False) -> None:
    """Write ``credential`` to ``path``, readable by its owner only (0600)."""
    document = {
        "format": CREDENTIAL_FORMAT,
        "terminal_id": credential.terminal_id,
        "store_id": credential.store_id,
        "token": credential.token,
    }
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if overwrite else os.O_EXCL)
    try:
        descriptor = os.open(path, flags, 0o600)
    except FileExistsError as exc:
        raise ConfigError(f"{path} exists: choose another file (or --force)") from exc
    except OSError as exc:
        raise ConfigError(f"cannot write {path}: {exc.strerror}") from exc
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        json.dump(document, handle)
        handle.write("\n")


def read_credential(path: Path) -> TillCredential:
    """The credential in ``path``; ConfigError (one line, never the token) if it is not one."""
    try:
        with path.open("rb") as handle:
            raw = handle.read(CREDENTIAL_BYTES_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"cannot read the till credential {path}: {exc.strerror}") from exc
    if len(raw) > CREDENTIAL_BYTES_MAX:
        raise ConfigError(f"{path} is not a till credential (too large)")
    try:
        document: Any = json.loads(raw)
        if document.get("format") != CREDENTIAL_FORMAT:
            raise ValueError("format")
        credential = TillCredential(
            check_terminal_id(str(document["terminal_id"])),
            str(document["store_id"]),
            str(document["token"]),
        )
    except (ValueError, TypeError, KeyError, AttributeError, CatalogError) as exc:
        raise ConfigError(
            f"{path} is not a till credential ({CREDENTIAL_FORMAT}): issue one with "
            "`posbatch catalog add-till`"
        ) from exc
    if not credential.token.startswith(TOKEN_PREFIX) or len(credential.token) > TOKEN_LENGTH_MAX:
        raise ConfigError(f"{path} holds no valid token: issue a new one with add-till --reissue")
    return credential
