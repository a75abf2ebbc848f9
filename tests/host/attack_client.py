"""An attacker's POS client, written from DESIGN.md's wire profile alone (a second one).

It imports nothing of posbatch, nor ``design_client.py``: the field table, packed decimal,
framing, MAC and key unwrap below were written from DESIGN.md ("Wire profile", "Keys and MAC")
and checked against its worked example (``test_attack.py``). Unlike a terminal it can say
anything: raw field bytes, a bitmap that lies, a length prefix that lies, a MAC under any key.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

TPDU: Final = bytes.fromhex("6000030000")
HEADER: Final = bytes.fromhex("603100000000")
READ_TIMEOUT_S: Final = 10.0

# field: (format, max). "n" fixed BCD right-aligned; "LLn"/"LLLn" variable BCD, prefix counts
# digits, left-aligned; "LLz" track 2 (= as D); "a" fixed ascii; "LLLa" ascii; "LLLb" binary.
SPEC: Final[dict[int, tuple[str, int]]] = {
    2: ("LLn", 19), 3: ("n", 6), 4: ("n", 12), 11: ("n", 6), 12: ("n", 6), 13: ("n", 4),
    14: ("n", 4), 22: ("n", 3), 25: ("n", 2), 35: ("LLz", 37), 37: ("a", 12), 38: ("a", 6),
    39: ("a", 2), 41: ("a", 8), 42: ("a", 15), 48: ("LLLn", 322), 49: ("a", 3),
    60: ("LLLn", 17), 61: ("LLLn", 29), 62: ("LLLb", 512), 63: ("LLLa", 163), 64: ("b", 8),
}  # fmt: skip

Value = str | bytes  # str: encoded by SPEC; bytes: the field's raw wire bytes, sent as they are


def bcd(digits: str, *, left_pad: bool) -> bytes:
    if len(digits) % 2:
        digits = "0" + digits if left_pad else digits + "0"
    return bytes.fromhex(digits)


def encode_field(number: int, value: str) -> bytes:
    kind, _ = SPEC[number]
    if kind == "n":
        return bcd(value, left_pad=True)
    if kind in ("a", "b"):
        return value.encode("latin-1")
    prefix = 1 if kind.startswith("LL") and not kind.startswith("LLL") else 2
    if kind.endswith("n") or kind.endswith("z"):
        data = bcd(value.replace("=", "D"), left_pad=False)
        return bcd(f"{len(value):0{prefix * 2}d}", left_pad=True) + data
    raw = value.encode("latin-1")
    return bcd(f"{len(raw):0{prefix * 2}d}", left_pad=True) + raw


def bitmap(numbers: list[int]) -> bytes:
    bits = 0
    for number in numbers:
        bits |= 1 << (64 - number)
    return bits.to_bytes(8, "big")


def body(mti: str, fields: Mapping[int, Value], *, bitmap_bytes: bytes | None = None) -> bytes:
    """The message after TPDU and header; raw ``bytes`` values are written as given."""
    numbers = sorted(fields)
    out = bytes.fromhex(mti) + (bitmap_bytes if bitmap_bytes is not None else bitmap(numbers))
    for number in numbers:
        value = fields[number]
        out += value if isinstance(value, bytes) else encode_field(number, value)
    return out


def frame(message: bytes, *, tpdu: bytes = TPDU, header: bytes = HEADER) -> bytes:
    data = tpdu + header + message
    return len(data).to_bytes(2, "big") + data


def des(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    if len(key) == 8:  # single DES = 3DES with K1 = K2 = K3
        key = key * 3
    elif len(key) == 16:  # double length: K1 K2 K1
        key = key + key[:8]
    cipher = Cipher(TripleDES(key), modes.ECB())
    worker = cipher.decryptor() if decrypt else cipher.encryptor()
    return worker.update(block) + worker.finalize()


def mac(mak: bytes, data: bytes) -> bytes:
    """DESIGN.md's CUP "ECB" MAC of ``data`` (MTI to the end of the last field before 64)."""
    data += b"\0" * (-len(data) % 8)
    folded = bytes(8)
    for start in range(0, len(data), 8):
        folded = bytes(a ^ b for a, b in zip(folded, data[start : start + 8], strict=True))
    text = folded.hex().upper().encode()
    first = des(mak, text[:8])
    second = des(mak, bytes(a ^ b for a, b in zip(first, text[8:], strict=True)))
    return second.hex().upper()[:8].encode()


def maced(mti: str, fields: Mapping[int, Value], mak: bytes) -> bytes:
    """``body`` with field 64 = the MAC under ``mak``."""
    without = body(mti, {**fields, 64: bytes(8)})[:-8]
    return without + mac(mak, without)


def check_value(key: bytes) -> bytes:
    return des(key, bytes(8))[:4]


def unwrap_mak(tmk: bytes, field62: bytes) -> bytes:
    assert len(field62) == 40, len(field62)
    mak_block = des(tmk, field62[20:36], decrypt=True)
    mak = mak_block[:8]
    assert mak_block[8:] == bytes(8) and check_value(mak) == field62[36:40]
    return mak


def decode(message: bytes) -> tuple[str, dict[int, bytes | str]]:
    """MTI and fields of an answer (numeric as digit strings, ascii as str, binary as bytes)."""
    mti = message[:2].hex()
    bits = int.from_bytes(message[2:10], "big")
    position = 10
    fields: dict[int, bytes | str] = {}
    for number in range(2, 65):
        if not bits & (1 << (64 - number)):
            continue
        kind, _ = SPEC[number]
        if kind == "n":
            digits = SPEC[number][1]
            size = (digits + 1) // 2
            fields[number] = message[position : position + size].hex()[-digits:]
            position += size
            continue
        if kind in ("a", "b"):
            size = SPEC[number][1]
            raw = message[position : position + size]
            fields[number] = raw if kind == "b" else raw.decode("ascii")
            position += size
            continue
        prefix = 1 if not kind.startswith("LLL") else 2
        length = int(message[position : position + prefix].hex())
        position += prefix
        if kind.endswith("n") or kind.endswith("z"):
            size = (length + 1) // 2
            fields[number] = message[position : position + size].hex().upper()[:length]
        else:
            size = length
            raw = message[position : position + size]
            fields[number] = raw if kind == "LLLb" else raw.decode("ascii")
        position += size
    assert position == len(message), (position, len(message))
    return mti, fields


@dataclass
class Answer:
    tpdu: bytes
    header: bytes
    mti: str
    fields: dict[int, bytes | str]
    mac_ok: bool | None  # None: no field 64

    @property
    def code(self) -> str:
        return str(self.fields.get(39, ""))


def read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError(f"closed after {len(data)} of {size} bytes")
        data += chunk
    return data


def read_answer(sock: socket.socket, mak: bytes | None) -> Answer:
    length = int.from_bytes(read_exactly(sock, 2), "big")
    data = read_exactly(sock, length)
    message = data[11:]
    mti, fields = decode(message)
    mac_ok = None
    if 64 in fields:
        mac_ok = mak is not None and mac(mak, message[:-8]) == fields[64]
    return Answer(data[:5], data[5:11], mti, fields, mac_ok)


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=READ_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock


def closed_by_peer(sock: socket.socket, timeout_s: float) -> bool:
    """Whether the peer closes ``sock`` (EOF or reset) within ``timeout_s``; data is drained."""
    sock.settimeout(timeout_s)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return False
    except ConnectionError:
        return True
    return True


class Attacker:
    """One terminal's ids and keys on one socket: well-formed requests, and raw ones."""

    def __init__(self, sock: socket.socket, terminal_id: str, merchant_id: str, tmk: bytes) -> None:
        self.sock = sock
        self.terminal_id = terminal_id
        self.merchant_id = merchant_id
        self.tmk = tmk
        self.mak: bytes | None = None
        self.batch_no = "000000"
        self.stan = 0

    def next_stan(self) -> str:
        self.stan = self.stan % 999_999 + 1
        return f"{self.stan:06d}"

    def ids(self) -> dict[int, Value]:
        return {41: self.terminal_id, 42: self.merchant_id}

    def send(self, message: bytes) -> Answer:
        self.sock.sendall(frame(message))
        return read_answer(self.sock, self.mak)

    def sign_on(self) -> Answer:
        fields: dict[int, Value] = {11: self.next_stan(), **self.ids(), 63: "01"}
        answer = self.send(body("0800", {**fields, 60: self.field60("00", "003")}))
        if answer.code == "00":
            self.mak = unwrap_mak(self.tmk, answer.fields[62])  # type: ignore[arg-type]
            self.batch_no = str(answer.fields[60])[2:8]
        return answer

    def sale_fields(self, amount_fen: int, pan: str, **override: Value) -> dict[int, Value]:
        fields: dict[int, Value] = {
            2: pan, 3: "000000", 4: f"{amount_fen:012d}", 11: self.next_stan(), 14: "3012",
            22: "021", 25: "00", **self.ids(), 49: "156", 60: f"22{self.batch_no}000",
        }  # fmt: skip
        fields.update({int(key[1:]): value for key, value in override.items()})
        return fields

    def sale(self, amount_fen: int, pan: str, **override: Value) -> Answer:
        return self.send(self.maced("0200", self.sale_fields(amount_fen, pan, **override)))

    def maced(self, mti: str, fields: dict[int, Value]) -> bytes:
        assert self.mak is not None, "sign on first"
        return maced(mti, fields, self.mak)

    def original(self, sale: Answer, stan: str, batch_no: str | None = None) -> str:
        return f"{batch_no or self.batch_no}{stan}{sale.fields[13]!s}"

    def void(self, amount_fen: int, pan: str, original: str) -> Answer:
        fields: dict[int, Value] = {
            2: pan, 3: "200000", 4: f"{amount_fen:012d}", 11: self.next_stan(), 22: "021",
            25: "00", **self.ids(), 49: "156", 60: f"23{self.batch_no}000", 61: original,
        }  # fmt: skip
        return self.send(self.maced("0200", fields))

    def refund(self, amount_fen: int, pan: str, original: str) -> Answer:
        fields: dict[int, Value] = {
            2: pan, 3: "200000", 4: f"{amount_fen:012d}", 11: self.next_stan(), 22: "021",
            25: "00", **self.ids(), 49: "156", 60: f"25{self.batch_no}000", 61: original,
        }  # fmt: skip
        return self.send(self.maced("0220", fields))

    def settle(self, debit_fen: int, debits: int, credit_fen: int, credits: int) -> Answer:
        half = f"{debit_fen:012d}{debits:03d}{credit_fen:012d}{credits:03d}0"
        empty = f"{0:012d}{0:03d}{0:012d}{0:03d}0"
        fields: dict[int, Value] = {
            11: self.next_stan(), **self.ids(), 48: half + empty, 49: "156",
            60: f"00{self.batch_no}201", 63: "01",
        }  # fmt: skip
        return self.send(self.maced("0500", fields))

    def upload(self, records: list[tuple[str, int, str, int]]) -> Answer:
        data = f"{len(records):02d}" + "".join(
            f"{kind}{stan:06d}{pan:0>20}{fen:012d}" for kind, stan, pan, fen in records
        )
        fields: dict[int, Value] = {
            11: self.next_stan(),
            **self.ids(),
            48: data,
            60: f"00{self.batch_no}201",
        }
        return self.send(self.maced("0320", fields))

    def upload_end(self, total: int, code: str = "207") -> Answer:
        fields: dict[int, Value] = {
            11: self.next_stan(),
            **self.ids(),
            48: f"{total:04d}",
            60: f"00{self.batch_no}{code}",
        }
        return self.send(self.maced("0320", fields))

    def echo(self) -> Answer:
        fields: dict[int, Value] = {11: self.next_stan(), **self.ids()}
        return self.send(body("0820", {**fields, 60: self.field60("00", "301")}))

    def field60(self, message_type: str, network_code: str) -> str:
        return f"{message_type}{self.batch_no}{network_code}"
