"""The terminal's own secrets: its master key (TMK) and the key that seals PANs.

They live in a key file next to the journal, never in it (mode 0600), so a
copied journal alone reveals no card number. The journal keeps each PAN
sealed with AES-GCM (a fresh 12-byte nonce per PAN, the terminal ID as
associated data) because batch upload must send the PAN again.

A reinstalled terminal gets a new PAN key, so a journal backup taken before
would not open there. A backup therefore carries its PAN keys sealed under a
passphrase the merchant chooses when taking it (:class:`BackupKey`: scrypt,
then AES-GCM); restoring it on a reinstalled terminal asks for the passphrase
and puts the backup's keys in the key file, keeping the terminal's own as an
older key (``older_pan_keys``: a PAN opens under any of them), so no row
written under either is ever lost.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from posbatch import storage
from posbatch.errors import ConfigError, StorageError
from posbatch.wire import TMK_BYTES

__all__ = [
    "BACKUP_KEY_FORMAT",
    "KEY_FILE_NAME",
    "PAN_SEAL_KEY_BYTES",
    "PASSPHRASE_CHARS_MAX",
    "PASSPHRASE_CHARS_MIN",
    "SCRYPT_N_DEFAULT",
    "BackupKey",
    "TerminalSecrets",
    "check_passphrase",
]

KEY_FILE_NAME: Final = "terminal.key"
PAN_SEAL_KEY_BYTES: Final = 32  # the AES-256-GCM key that seals card numbers in the journal
NONCE_BYTES: Final = 12
KEY_FILE_MODE: Final = 0o600
# Older PAN keys the key file keeps after a restore brought the backup's (newest first).
PAN_KEYS_KEPT_MAX: Final = 4
# The backup passphrase: typed by a person at a hidden prompt (or piped on stdin).
PASSPHRASE_CHARS_MIN: Final = 8
PASSPHRASE_CHARS_MAX: Final = 1024
# scrypt (RFC 7914) cost: N = 2**15, r = 8, p = 1 (32 MiB, ≈0.1 s here). A backup records
# its own parameters; one whose N is below SCRYPT_N_MIN or above SCRYPT_N_MAX is refused.
SCRYPT_N_DEFAULT: Final = 2**15
SCRYPT_N_MIN: Final = 2**10
SCRYPT_N_MAX: Final = 2**20
SCRYPT_R: Final = 8
SCRYPT_P: Final = 1
SALT_BYTES: Final = 16
BACKUP_KEY_FORMAT: Final = "posbatch-backup-key/1"
_BACKUP_KEY_AAD: Final = b"posbatch backup key|"


def check_passphrase(passphrase: str) -> None:
    """ConfigError unless ``passphrase`` has 8..1024 characters."""
    if not PASSPHRASE_CHARS_MIN <= len(passphrase) <= PASSPHRASE_CHARS_MAX:
        raise ConfigError(
            f"the backup passphrase must have {PASSPHRASE_CHARS_MIN} to "
            f"{PASSPHRASE_CHARS_MAX} characters"
        )


def _scrypt(passphrase: str, salt: bytes, n: int) -> bytes:
    return Scrypt(salt=salt, length=32, n=n, r=SCRYPT_R, p=SCRYPT_P).derive(
        passphrase.encode("utf-8")
    )


@dataclass(frozen=True, slots=True, repr=False)
class BackupKey:
    """A backup's PAN keys sealed under the merchant's passphrase (never printed).

    scrypt(passphrase, salt) → a 32-byte key; AES-GCM seals the PAN keys (the
    first is the one new rows were sealed with) with the terminal ID as
    associated data, so a sealed key cannot be moved to another terminal's backup.
    """

    terminal_id: str
    salt: bytes
    nonce: bytes
    sealed: bytes
    n: int = SCRYPT_N_DEFAULT

    def __repr__(self) -> str:
        return f"BackupKey(terminal_id={self.terminal_id!r}, n={self.n}, sealed=****)"

    @classmethod
    def seal(
        cls,
        secrets: TerminalSecrets,
        terminal_id: str,
        passphrase: str,
        *,
        n: int = SCRYPT_N_DEFAULT,
        random_bytes: Callable[[int], bytes] = os.urandom,
    ) -> BackupKey:
        check_passphrase(passphrase)
        salt, nonce = random_bytes(SALT_BYTES), random_bytes(NONCE_BYTES)
        keys = [secrets.pan_key.hex(), *(key.hex() for key in secrets.older_pan_keys)]
        clear = json.dumps({"pan_keys": keys}).encode("ascii")
        sealed = AESGCM(_scrypt(passphrase, salt, n)).encrypt(
            nonce, clear, _BACKUP_KEY_AAD + terminal_id.encode()
        )
        return cls(terminal_id, salt, nonce, sealed, n)

    def open(self, passphrase: str) -> tuple[bytes, ...]:
        """The PAN keys (first: the newest); ConfigError for a wrong passphrase."""
        if not SCRYPT_N_MIN <= self.n <= SCRYPT_N_MAX or self.n & (self.n - 1):
            raise ConfigError(f"the backup's key uses scrypt N={self.n}: not accepted")
        try:
            clear = AESGCM(_scrypt(passphrase, self.salt, self.n)).decrypt(
                self.nonce, self.sealed, _BACKUP_KEY_AAD + self.terminal_id.encode()
            )
            keys = tuple(bytes.fromhex(key) for key in json.loads(clear)["pan_keys"])
        except InvalidTag as exc:
            raise ConfigError("wrong passphrase for this backup: nothing was changed") from exc
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError("the backup's sealed key is damaged: nothing was changed") from exc
        if not keys or any(len(key) != PAN_SEAL_KEY_BYTES for key in keys):
            raise ConfigError("the backup's sealed key is damaged: nothing was changed")
        return keys

    def to_row(self) -> dict[str, object]:
        return {
            "format": BACKUP_KEY_FORMAT,
            "terminal_id": self.terminal_id,
            "kdf": "scrypt",
            "n": self.n,
            "r": SCRYPT_R,
            "p": SCRYPT_P,
            "salt": self.salt.hex(),
            "nonce": self.nonce.hex(),
            "sealed": self.sealed.hex(),
        }

    @classmethod
    def from_row(cls, row: Mapping[str, object]) -> BackupKey:
        try:
            if (row["format"], row["kdf"], row["r"], row["p"]) != (
                BACKUP_KEY_FORMAT, "scrypt", SCRYPT_R, SCRYPT_P,
            ):  # fmt: skip
                raise ConfigError("the backup's key is of a format this version cannot read")
            return cls(
                str(row["terminal_id"]),
                bytes.fromhex(str(row["salt"])),
                bytes.fromhex(str(row["nonce"])),
                bytes.fromhex(str(row["sealed"])),
                int(str(row["n"])),
            )
        except (KeyError, ValueError) as exc:
            raise ConfigError("the backup's sealed key is damaged") from exc


@dataclass(frozen=True, slots=True, repr=False)
class TerminalSecrets:
    """Master key (for field 62) and PAN sealing key. Never printed."""

    master_key: bytes
    pan_key: bytes
    # Keys PANs were sealed with before (a restore brought the backup's key): opened, never
    # used to seal. At most PAN_KEYS_KEPT_MAX.
    older_pan_keys: tuple[bytes, ...] = ()

    def __post_init__(self) -> None:
        if len(self.master_key) != TMK_BYTES:  # the terminal master key is the TMK of field 62
            raise ConfigError(f"the master key is {TMK_BYTES} bytes (32 hex digits)")
        if any(len(key) != PAN_SEAL_KEY_BYTES for key in (self.pan_key, *self.older_pan_keys)):
            raise ConfigError(f"the PAN key is {PAN_SEAL_KEY_BYTES} bytes")

    def __repr__(self) -> str:
        return "TerminalSecrets(master_key=****, pan_key=****)"

    def with_pan_keys(self, keys: tuple[bytes, ...]) -> TerminalSecrets:
        """These secrets sealing with ``keys[0]`` from now on, opening with every key of
        ``keys`` and every key they held (newest first, at most PAN_KEYS_KEPT_MAX older)."""
        older: list[bytes] = []
        for key in (*keys[1:], self.pan_key, *self.older_pan_keys):
            if key != keys[0] and key not in older:
                older.append(key)
        return TerminalSecrets(self.master_key, keys[0], tuple(older[:PAN_KEYS_KEPT_MAX]))

    def opens(self, sealed: str, terminal_id: str) -> bool:
        """Whether a PAN sealed as ``sealed`` opens with these secrets."""
        try:
            self.open_pan(sealed, terminal_id)
        except StorageError:
            return False
        return True

    @classmethod
    def create(
        cls, master_key: bytes, *, random_bytes: Callable[[int], bytes] = os.urandom
    ) -> TerminalSecrets:
        return cls(master_key=master_key, pan_key=random_bytes(PAN_SEAL_KEY_BYTES))

    def _text(self) -> str:
        data: dict[str, object] = {
            "master_key": self.master_key.hex(),
            "pan_key": self.pan_key.hex(),
        }
        if self.older_pan_keys:
            data["older_pan_keys"] = [key.hex() for key in self.older_pan_keys]
        return json.dumps(data)

    def replace_file(self, path: Path) -> None:
        """Put these secrets in the key file at ``path`` at once (written aside with mode
        0600, flushed, renamed over it): a crash leaves the old file or the new, whole."""
        aside = path.with_name(path.name + ".new")
        aside.unlink(missing_ok=True)
        descriptor = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
        with os.fdopen(descriptor, "w", encoding="ascii") as handle:
            handle.write(self._text())
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(aside, path)
        directory = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)

    def save(self, path: Path) -> None:
        """Write the key file with mode 0600 (refuses to overwrite one)."""
        text = self._text()
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
            return cls(
                bytes.fromhex(data["master_key"]),
                bytes.fromhex(data["pan_key"]),
                tuple(bytes.fromhex(key) for key in data.get("older_pan_keys", [])),
            )
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
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
        except (ValueError, binascii.Error) as exc:
            raise StorageError("a sealed PAN does not open with this terminal's key") from exc
        for key in (self.pan_key, *self.older_pan_keys):
            try:
                clear = AESGCM(key).decrypt(
                    raw[:NONCE_BYTES], raw[NONCE_BYTES:], terminal_id.encode()
                )
            except (InvalidTag, ValueError):
                continue
            return clear.decode("ascii")
        raise StorageError("a sealed PAN does not open with this terminal's key")
