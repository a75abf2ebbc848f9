"""Keys sealed at rest: the host's key-encryption key (KEK) and the sealed-key format.

Theory of operation. Every terminal key the host stores — the master key (TMK)
and the working keys (MAK, PIK) — is sealed with AES-256-GCM under one KEK
that is never in the database. The :class:`~posbatch.host.store.HostStore`
seals on write and opens on read, in one place; nothing else ever sees a
sealed key, and nothing in the database opens without the KEK.

A sealed key is ``version (1) ‖ kek_id (8) ‖ nonce (12) ‖ ciphertext ‖ tag (16)``
(a 16-byte key seals to 53 bytes). The associated data binds it to its place:
the header, the kind of key (``tmk``/``mak``/``pik``) and the terminal id — a
sealed key copied to another terminal's row, or a sealed PIK put where the TMK
belongs, does not open. ``kek_id`` (an HMAC of the KEK, not the KEK) names the
KEK a key was sealed under, so a store opened with the wrong KEK says so in one
line instead of failing a MAC on every request.

Where the KEK comes from (:func:`resolve_kek`), first found wins:

1. ``POSBATCH_HOST_KEK_FILE`` — the path of a file holding the KEK (a store on
   another machine, a KEK on a mounted secret volume);
2. ``POSBATCH_HOST_KEK`` — the KEK itself, 64 hex digits (a secret injected by
   a container runtime; an environment is readable only by its owner, unlike a
   command line, which ``ps`` shows to every user);
3. ``<data dir>/host-kek.key`` — the default, created (mode 0600) with the store.

A KEK file holds 64 hex digits and must not be readable by other users (it is
refused otherwise, like ssh refuses an open private key).
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from posbatch import storage
from posbatch.errors import ConfigError, KekMismatch, PosbatchError, StorageError

__all__ = [
    "KEK_BYTES",
    "KEK_ENV",
    "KEK_FILE_ENV",
    "KEK_FILE_NAME",
    "PENDING_SUFFIX",
    "SEALED_KEY_BYTES_MAX",
    "KeyEncryptionKey",
    "KeyKind",
    "commit_rotation",
    "finish_rotation",
    "follow_rotation",
    "pending_kek_path",
    "read_kek_file",
    "resolve_kek",
    "stage_rotation",
]

KEK_BYTES: Final = 32  # AES-256
KEK_ID_BYTES: Final = 8
NONCE_BYTES: Final = 12
TAG_BYTES: Final = 16
SEAL_VERSION: Final = 1
HEADER_BYTES: Final = 1 + KEK_ID_BYTES
# The longest key the host seals is 24 bytes (pending PIK ‖ MAK): 1 + 8 + 12 + 24 + 16 = 61.
SEALED_KEY_BYTES_MAX: Final = 64
KEK_FILE_NAME: Final = "host-kek.key"
KEK_FILE_ENV: Final = "POSBATCH_HOST_KEK_FILE"
KEK_ENV: Final = "POSBATCH_HOST_KEK"
_KEK_ID_LABEL: Final = b"posbatch host KEK id v1"
_AD_LABEL: Final = b"posbatch host key v1"


class KeyKind(StrEnum):
    """What a sealed key is; part of its associated data."""

    TMK = "tmk"
    MAK = "mak"
    PIK = "pik"
    PENDING = "pending"  # PIK ‖ MAK handed out at a sign-on, not in force yet


@dataclass(frozen=True, slots=True, repr=False)
class KeyEncryptionKey:
    """The KEK: seals and opens the host's terminal keys. Never printed.

    ``source`` says where it came from (a path, an environment variable) for
    the messages a person reads when it is the wrong one; ``path`` is the file
    it was read from, if any (a rotation replaces that file).
    """

    key: bytes
    source: str = "the KEK given"
    path: Path | None = None
    kek_id: str = field(init=False, compare=False)
    _aead: AESGCM = field(init=False, compare=False)
    _header: bytes = field(init=False, compare=False)  # version ‖ kek_id of what it seals

    def __post_init__(self) -> None:
        if len(self.key) != KEK_BYTES:
            raise ConfigError(
                f"{self.source}: a KEK is {KEK_BYTES} bytes ({2 * KEK_BYTES} hex digits)"
            )
        digest = hmac.digest(self.key, _KEK_ID_LABEL, "sha256")[:KEK_ID_BYTES]
        object.__setattr__(self, "kek_id", digest.hex())
        object.__setattr__(self, "_aead", AESGCM(self.key))
        object.__setattr__(self, "_header", bytes([SEAL_VERSION]) + digest)

    def __repr__(self) -> str:
        return f"KeyEncryptionKey(id={self.kek_id}, source={self.source!r})"

    @classmethod
    def generate(cls, source: str = "a new KEK") -> KeyEncryptionKey:
        return cls(os.urandom(KEK_BYTES), source)

    @classmethod
    def from_hex(cls, text: str, source: str, path: Path | None = None) -> KeyEncryptionKey:
        cleaned = text.strip()
        if len(cleaned) != 2 * KEK_BYTES:
            raise ConfigError(f"{source} must hold {2 * KEK_BYTES} hex digits (a 32-byte KEK)")
        try:
            return cls(bytes.fromhex(cleaned), source, path)
        except ValueError:
            raise ConfigError(f"{source} must hold hex digits 0-9 A-F only") from None

    def hex(self) -> str:
        return self.key.hex().upper()

    def seal(self, clear: bytes, *, kind: KeyKind, terminal_id: str) -> bytes:
        """``clear`` sealed for the ``kind`` key of ``terminal_id`` (a fresh nonce each time)."""
        nonce = os.urandom(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, clear, _associated(self._header, kind, terminal_id))
        return self._header + nonce + sealed

    def open(self, sealed: bytes, *, kind: KeyKind, terminal_id: str) -> bytes:
        """The clear key; StorageError (KekMismatch for another KEK) when it does not open."""
        if sealed[:HEADER_BYTES] != self._header or len(sealed) < _SEALED_BYTES_MIN:
            raise self._not_mine(bytes(sealed), kind, terminal_id)
        try:
            return self._aead.decrypt(
                sealed[HEADER_BYTES:_NONCE_END],
                sealed[_NONCE_END:],
                _associated(self._header, kind, terminal_id),
            )
        except InvalidTag:
            raise StorageError(
                f"the sealed {kind.value.upper()} of terminal {terminal_id} does not open: "
                "it was altered or moved from another row"
            ) from None

    def _not_mine(self, sealed: bytes, kind: KeyKind, terminal_id: str) -> StorageError:
        """Why ``sealed`` is not a key sealed under this KEK (the slow path: a message)."""
        if len(sealed) < _SEALED_BYTES_MIN or sealed[0] != SEAL_VERSION:
            return StorageError(
                f"the {kind.value.upper()} of terminal {terminal_id} is not a sealed key: "
                "the host store was changed outside posbatch"
            )
        kek_id = sealed[1:HEADER_BYTES].hex()
        return KekMismatch(
            f"the {kind.value.upper()} of terminal {terminal_id} is sealed under KEK "
            f"{kek_id}, not under KEK {self.kek_id} ({self.source})",
            store_kek_id=kek_id,
        )


_NONCE_END: Final = HEADER_BYTES + NONCE_BYTES
_SEALED_BYTES_MIN: Final = _NONCE_END + TAG_BYTES
_KIND_LABELS: Final = {kind: kind.value.encode() for kind in KeyKind}


def _associated(header: bytes, kind: KeyKind, terminal_id: str) -> bytes:
    return b"\0".join((_AD_LABEL, header, _KIND_LABELS[kind], terminal_id.encode()))


# --- where the KEK comes from (the I/O shell of this module) ---------------------------


def resolve_kek(
    data_dir: Path, *, create: bool, environ: Mapping[str, str] | None = None
) -> KeyEncryptionKey:
    """The KEK for the store of ``data_dir`` (see the module docstring for the order).

    ``create``: write a new default KEK file when there is none (a new store);
    otherwise a missing KEK is a ConfigError that says where it was looked for.
    """
    env = os.environ if environ is None else environ
    path_text = env.get(KEK_FILE_ENV, "").strip()
    if path_text:
        return read_kek_file(Path(path_text), source=f"{KEK_FILE_ENV}={path_text}")
    value = env.get(KEK_ENV, "").strip()
    if value:
        return KeyEncryptionKey.from_hex(value, KEK_ENV)
    path = data_dir / KEK_FILE_NAME
    if create and not path.exists():
        storage.write_private_file(path, KeyEncryptionKey.generate().hex() + "\n", exclusive=True)
    return read_kek_file(path, source=str(path))


def read_kek_file(path: Path, *, source: str | None = None) -> KeyEncryptionKey:
    """The KEK held in ``path`` (64 hex digits, not readable by other users)."""
    text = storage.read_private_file(
        path,
        missing=(
            f"no KEK at {path}: give the key-encryption key the host store was sealed with "
            f"({KEK_FILE_ENV}=PATH or {KEK_ENV}), see docs/host.md"
        ),
    )
    return KeyEncryptionKey.from_hex(text, source or str(path), path)


# --- rotation: the new KEK file waits beside the old one until the store commits -------
#
# rotate-kek (1) writes the new KEK to ``<KEK file>.next`` (durably), (2) re-seals every
# key in one transaction, (3) renames ``.next`` over the KEK file. A crash before (2)
# commits leaves the old KEK in force (``.next`` is ignored, then overwritten by the
# next rotation); a crash between (2) and (3) is finished by the next opening of the
# store (:func:`finish_rotation`), which finds the store sealed under the ``.next`` KEK.

PENDING_SUFFIX: Final = ".next"


def pending_kek_path(path: Path) -> Path:
    return path.with_name(path.name + PENDING_SUFFIX)


def stage_rotation(kek: KeyEncryptionKey, new_kek: KeyEncryptionKey) -> Path | None:
    """Step (1): the new KEK beside ``kek``'s file; None when ``kek`` came from no file."""
    if kek.path is None:
        return None
    pending = pending_kek_path(kek.path)
    storage.write_private_file(pending, new_kek.hex() + "\n", exclusive=False)
    return pending


def commit_rotation(kek: KeyEncryptionKey) -> None:
    """Step (3): the staged KEK becomes the KEK file (atomic rename, durable)."""
    if kek.path is not None:
        storage.replace_file(pending_kek_path(kek.path), kek.path)


def finish_rotation(kek: KeyEncryptionKey, store_kek_id: str) -> bool:
    """After a crash between steps (2) and (3): True if the staged KEK is the store's (now
    in place), False if there is none or it is not the one the store is sealed under."""
    if kek.path is None:
        return False
    pending = pending_kek_path(kek.path)
    if not pending.exists() or read_kek_file(pending).kek_id != store_kek_id:
        return False
    storage.replace_file(pending, kek.path)
    return True


def follow_rotation(kek: KeyEncryptionKey, store_kek_id: str) -> KeyEncryptionKey | None:
    """The KEK a rotation run by another process put in ``kek``'s place, if it is the one
    the store is now sealed under (``store_kek_id``); else None.

    A serving host holds its KEK in memory. When ``rotate-kek`` commits (step 2) the
    store names the new KEK, which waits in ``<KEK file>.next`` until step 3 renames it
    over the KEK file: either file may hold it, so both are read. A KEK that came from
    no file (``POSBATCH_HOST_KEK``) cannot be followed: that host is refused until it is
    restarted with the new one. Nothing is written here (step 3 is the rotation's, or the
    next command's: :func:`finish_rotation`); the KEK returned keeps ``kek``'s file as
    its path and source, so a later rotation stages beside the right file.
    """
    if kek.path is None:
        return None
    for candidate in (kek.path, pending_kek_path(kek.path)):
        try:
            found = read_kek_file(candidate)
        except (PosbatchError, OSError):
            continue  # missing, unreadable, refused for its mode: not this one
        if found.kek_id == store_kek_id:
            return KeyEncryptionKey(found.key, kek.source, kek.path)
    return None
