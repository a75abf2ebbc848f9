"""The terminal's own secrets: its master key (TMK) and the key that seals PANs.

They live in a key file next to the journal, never in it (mode 0600), so a
copied journal alone reveals no card number. The journal keeps each PAN
sealed with AES-GCM (a fresh 12-byte nonce per PAN, the terminal ID as
associated data) because batch upload must send the PAN again.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from posbatch import storage
from posbatch.errors import ConfigError, StorageError

__all__ = ["KEY_FILE_NAME", "PAN_KEY_BYTES", "TerminalSecrets"]

KEY_FILE_NAME: Final = "terminal.key"
PAN_KEY_BYTES: Final = 32
MASTER_KEY_BYTES: Final = 16
NONCE_BYTES: Final = 12
KEY_FILE_MODE: Final = 0o600


@dataclass(frozen=True, slots=True, repr=False)
class TerminalSecrets:
    """Master key (for field 62) and PAN sealing key. Never printed."""

    master_key: bytes
    pan_key: bytes

    def __post_init__(self) -> None:
        if len(self.master_key) != MASTER_KEY_BYTES:
            raise ConfigError(f"the master key is {MASTER_KEY_BYTES} bytes (32 hex digits)")
        if len(self.pan_key) != PAN_KEY_BYTES:
            raise ConfigError(f"the PAN key is {PAN_KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return "TerminalSecrets(master_key=****, pan_key=****)"

    @classmethod
    def create(
        cls, master_key: bytes, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> TerminalSecrets:
        return cls(master_key=master_key, pan_key=random_bytes(PAN_KEY_BYTES))

    @staticmethod
    def parse_master_key(text: str) -> bytes:
        """32 hex digits → 16 bytes; :class:`ConfigError` otherwise."""
        cleaned = text.strip().replace(" ", "")
        if len(cleaned) != 2 * MASTER_KEY_BYTES:
            raise ConfigError(f"the master key is {2 * MASTER_KEY_BYTES} hex digits")
        try:
            return bytes.fromhex(cleaned)
        except ValueError as exc:
            raise ConfigError("the master key must be hex digits 0-9 A-F") from exc

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600 (refuses to overwrite one)."""
        text = json.dumps({"master_key": self.master_key.hex(), "pan_key": self.pan_key.hex()})
        storage.make_private_dir(path.parent)
        try:
            descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        except FileExistsError as exc:
            raise ConfigError(f"{path} exists already: this terminal is initialised") from exc
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())

    @classmethod
    def load(cls, path: Path) -> TerminalSecrets:
        try:
            mode = stat.S_IMODE(path.stat().st_mode)
            text = path.read_text(encoding="ascii")
        except FileNotFoundError as exc:
            raise ConfigError(f"no key file at {path}: run `posbatch terminal init`") from exc
        except OSError as exc:
            raise StorageError(f"cannot read the key file {path}: {exc}") from exc
        if mode & 0o077:
            raise ConfigError(f"{path} is readable by others (mode {mode:o}); chmod 600 it")
        try:
            data = json.loads(text)
            return cls(bytes.fromhex(data["master_key"]), bytes.fromhex(data["pan_key"]))
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"{path} is not a terminal key file") from exc

    # --- PAN sealing -------------------------------------------------------------

    def seal_pan(
        self,
        pan: str,
        terminal_id: str,
        *,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> str:
        nonce = random_bytes(NONCE_BYTES)
        sealed = AESGCM(self.pan_key).encrypt(nonce, pan.encode("ascii"), terminal_id.encode())
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open_pan(self, sealed: str, terminal_id: str) -> str:
        try:
            raw = base64.b64decode(sealed.encode("ascii"), validate=True)
            clear = AESGCM(self.pan_key).decrypt(
                raw[:NONCE_BYTES], raw[NONCE_BYTES:], terminal_id.encode()
            )
        except (InvalidTag, ValueError, binascii.Error) as exc:
            raise StorageError("a sealed PAN does not open with this terminal's key") from exc
        return clear.decode("ascii")
