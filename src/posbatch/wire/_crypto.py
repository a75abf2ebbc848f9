"""MAC and working keys (DESIGN.md, "Keys and MAC").

MAC, the CUP "ECB" style, over the body from the MTI to the end of the last
field before 64 (bitmap bit 64 already set):

1. pad with 0x00 to a multiple of 8 and XOR all 8-byte blocks;
2. write the 8-byte result as 16 uppercase hex characters;
3. DES-encrypt the first 8 characters with the MAK, XOR with the last 8;
4. DES-encrypt again, write as 16 uppercase hex, field 64 = the first 8 (ASCII).

Working keys travel in sign-on response field 62 (40 bytes)::

    3DES-ECB(TMK, PIK)      16 | PIK check value 4 |
    3DES-ECB(TMK, MAK ‖ 0⁸) 16 | MAK check value 4

A check value is the first 4 bytes of the key encrypting 8 zero bytes.
The MAK is single DES (8 bytes); the TMK and PIK are double-length 3DES (16).
"""

from __future__ import annotations

import hmac
import secrets
import threading
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.primitives.ciphers import Cipher, CipherContext, modes

try:  # cryptography ≥ 43 keeps 3DES among the "decrepit" algorithms
    from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
except ImportError:  # pragma: no cover - older cryptography
    from cryptography.hazmat.primitives.ciphers.algorithms import (
        TripleDES,
    )

from posbatch.errors import ConfigError, KeyCheckError, MacError

__all__ = [
    "FIELD62_BYTES",
    "MAC_BYTES",
    "TMK_BYTES",
    "WorkingKeys",
    "check_value",
    "compute_mac",
    "generate_working_keys",
    "parse_tmk",
    "unwrap_working_keys",
    "verify_mac",
    "wrap_working_keys",
]

MAC_BYTES: Final = 8
MAK_BYTES: Final = 8
PIK_BYTES: Final = 16
TMK_BYTES: Final = 16
CHECK_VALUE_BYTES: Final = 4
FIELD62_BYTES: Final = 40
_ZERO_BLOCK: Final = bytes(8)
_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")
# MAC encryptors kept per thread, by MAK (a key schedule costs ~6 times one block).
MAC_CONTEXTS_MAX: Final = 4096
_mac_contexts = threading.local()


def _triple_key(key: bytes) -> bytes:
    # Single DES as 3DES with K1 = K2 = K3; double length as K1 K2 K1.
    if len(key) == 8:
        return key * 3
    if len(key) == 16:
        return key + key[:8]
    raise ValueError(f"a DES key is 8 or 16 bytes, not {len(key)}")


def _encryptor(key: bytes) -> CipherContext:
    return Cipher(TripleDES(_triple_key(key)), modes.ECB()).encryptor()  # noqa: S305 - the spec's ECB


def _decryptor(key: bytes) -> CipherContext:
    return Cipher(TripleDES(_triple_key(key)), modes.ECB()).decryptor()  # noqa: S305


def _encrypt(key: bytes, data: bytes) -> bytes:
    context = _encryptor(key)
    return context.update(data) + context.finalize()


def _decrypt(key: bytes, data: bytes) -> bytes:
    context = _decryptor(key)
    return context.update(data) + context.finalize()


def check_value(key: bytes) -> bytes:
    """First 4 bytes of ``key`` encrypting 8 zero bytes."""
    return _encrypt(key, _ZERO_BLOCK)[:CHECK_VALUE_BYTES]


def _xor(left: bytes, right: bytes) -> bytes:
    return (int.from_bytes(left, "big") ^ int.from_bytes(right, "big")).to_bytes(8, "big")


def compute_mac(mak: bytes, mac_input: bytes) -> bytes:
    """Field 64 for ``mac_input`` (MTI .. end of the field before 64): 8 ASCII hex bytes."""
    if len(mak) != MAK_BYTES:
        raise ValueError(f"the MAK is {MAK_BYTES} bytes, not {len(mak)}")
    padded_length = -(-len(mac_input) // 8) * 8
    # XOR of all 8-byte blocks == XOR-fold of the padded integer, block by block.
    value = int.from_bytes(mac_input.ljust(padded_length, b"\x00"), "big")
    folded = 0
    while value:
        folded ^= value & 0xFFFF_FFFF_FFFF_FFFF
        value >>= 64
    hex_block = folded.to_bytes(8, "big").hex().upper().encode("ascii")
    context = _mac_encryptor(mak)
    first = context.update(hex_block[:8])
    second = context.update(_xor(first, hex_block[8:]))
    return second.hex().upper().encode("ascii")[:MAC_BYTES]


def _mac_encryptor(mak: bytes) -> CipherContext:
    """The ECB encryptor of ``mak``, reused: ECB keeps no state between whole blocks.

    Per thread (a context is not for concurrent use); the oldest goes beyond the limit.
    """
    contexts: dict[bytes, CipherContext] | None = getattr(_mac_contexts, "by_key", None)
    if contexts is None:
        contexts = _mac_contexts.by_key = {}
    key = bytes(mak)
    context = contexts.get(key)
    if context is None:
        if len(contexts) >= MAC_CONTEXTS_MAX:
            del contexts[next(iter(contexts))]
        context = contexts[key] = _encryptor(key)
    return context


def verify_mac(mak: bytes, mac_input: bytes, mac: bytes) -> None:
    """Raise :class:`MacError` unless ``mac`` is the MAC of ``mac_input`` under ``mak``."""
    if not hmac.compare_digest(compute_mac(mak, mac_input), mac):
        raise MacError("MAC does not verify")


@dataclass(frozen=True, slots=True, repr=False)
class WorkingKeys:
    """The session keys a sign-on hands out. Never printed."""

    pik: bytes
    mak: bytes

    def __post_init__(self) -> None:
        if len(self.pik) != PIK_BYTES or len(self.mak) != MAK_BYTES:
            raise ValueError("PIK is 16 bytes and MAK 8 bytes")

    def __repr__(self) -> str:
        return "WorkingKeys(pik=****, mak=****)"


def generate_working_keys() -> WorkingKeys:
    """Fresh random keys for one sign-on (``secrets``, not the simulation RNG)."""
    return WorkingKeys(pik=secrets.token_bytes(PIK_BYTES), mak=secrets.token_bytes(MAK_BYTES))


def parse_tmk(text: str) -> bytes:
    """A terminal master key as people write it (32 hex digits, spaces allowed) → 16 bytes.

    The one parser of a TMK for every door it comes in by: the host's and the terminal's
    key files and the back office's form. :class:`ConfigError` says what is wrong, never
    quoting the text (it may be a key, or a card number typed into the wrong field).
    """
    cleaned = text.strip().replace(" ", "")
    if len(cleaned) != 2 * TMK_BYTES:
        raise ConfigError(f"the master key is {2 * TMK_BYTES} hex digits")
    if not all(char in _HEX_DIGITS for char in cleaned):
        raise ConfigError("the master key must be hex digits 0-9 A-F")
    return bytes.fromhex(cleaned)


def wrap_working_keys(tmk: bytes, keys: WorkingKeys) -> bytes:
    """Field 62 of a sign-on response: both keys under the TMK, with check values."""
    if len(tmk) != TMK_BYTES:
        raise ValueError(f"the TMK is {TMK_BYTES} bytes, not {len(tmk)}")
    return (
        _encrypt(tmk, keys.pik)
        + check_value(keys.pik)
        + _encrypt(tmk, keys.mak + _ZERO_BLOCK)
        + check_value(keys.mak)
    )


def unwrap_working_keys(tmk: bytes, field62: bytes) -> WorkingKeys:
    """The keys of field 62, each checked against its check value (:class:`KeyCheckError`)."""
    if len(tmk) != TMK_BYTES:
        raise ValueError(f"the TMK is {TMK_BYTES} bytes, not {len(tmk)}")
    if len(field62) != FIELD62_BYTES:
        raise KeyCheckError(f"field 62 must be {FIELD62_BYTES} bytes, got {len(field62)}")
    pik = _decrypt(tmk, field62[:16])
    if not hmac.compare_digest(check_value(pik), field62[16:20]):
        raise KeyCheckError("PIK check value differs: wrong master key?")
    mak_block = _decrypt(tmk, field62[20:36])
    mak = mak_block[:MAK_BYTES]
    if mak_block[MAK_BYTES:] != _ZERO_BLOCK or not hmac.compare_digest(
        check_value(mak), field62[36:40]
    ):
        raise KeyCheckError("MAK check value differs: wrong master key?")
    return WorkingKeys(pik=pik, mak=mak)
