"""A POS terminal written from DESIGN.md alone, as an outside author would write one.

It imports nothing of posbatch: its own packed-decimal field table (DESIGN.md's "Wire
profile"), its own framing, its own DES/3DES MAC and key unwrap with ``cryptography``
(DESIGN.md's "Keys and MAC"). The busy-shop probe (``test_busy_shop.py``) drives a real
host on a loopback socket with it, so that every answer is checked against the contract,
not against the host's own encoder.
"""

from __future__ import annotations

import socket
from dataclasses import dataclass, field
from typing import Final

from cryptography.hazmat.decrepit.ciphers.algorithms import TripleDES
from cryptography.hazmat.primitives.ciphers import Cipher, modes

TPDU: Final = bytes.fromhex("6000030000")
HEADER: Final = bytes.fromhex("603100000000")
ANSWER_TIMEOUT_S: Final = 10.0

# field: (kind, max length). kind: "n" fixed BCD digits, "LLn"/"LLLn" variable BCD (prefix
# counts digits), "LLz" track 2 (D for =), "a" fixed ascii, "LLLa" ascii, "LLLb" binary, "b".
FIELDS: Final[dict[int, tuple[str, int]]] = {
    2: ("LLn", 19),
    3: ("n", 6),
    4: ("n", 12),
    11: ("n", 6),
    12: ("n", 6),
    13: ("n", 4),
    14: ("n", 4),
    22: ("n", 3),
    25: ("n", 2),
    35: ("LLz", 37),
    37: ("a", 12),
    38: ("a", 6),
    39: ("a", 2),
    41: ("a", 8),
    42: ("a", 15),
    48: ("LLLn", 322),
    49: ("a", 3),
    60: ("LLLn", 17),
    61: ("LLLn", 29),
    62: ("LLLb", 512),
    63: ("LLLa", 163),
    64: ("b", 8),
}


def _pack(digits: str, *, left_pad: bool) -> bytes:
    if len(digits) % 2:
        digits = "0" + digits if left_pad else digits + "0"
    return bytes.fromhex(digits)


def _length(value: int, prefix_bytes: int) -> bytes:
    return bytes.fromhex(f"{value:0{prefix_bytes * 2}d}")


def encode_body(mti: str, fields: dict[int, str | bytes]) -> bytes:
    """MTI + bitmap + fields (64 given as b"" is left out: see ``mac``)."""
    bitmap = 0
    out = b""
    for number in sorted(fields):
        kind, _ = FIELDS[number]
        value = fields[number]
        bitmap |= 1 << (64 - number)
        if kind == "n":
            assert isinstance(value, str)
            out += _pack(value, left_pad=True)
        elif kind in ("LLn", "LLz", "LLLn"):
            assert isinstance(value, str)
            digits = value.replace("=", "D") if kind == "LLz" else value
            out += _length(len(value), 2 if kind.startswith("LLL") else 1)
            out += _pack(digits, left_pad=False)
        elif kind == "a":
            assert isinstance(value, str)
            out += value.encode("ascii")
        elif kind == "LLLa":
            assert isinstance(value, str)
            out += _length(len(value), 2) + value.encode("ascii")
        elif kind == "LLLb":
            assert isinstance(value, bytes)
            out += _length(len(value), 2) + value
        else:
            assert isinstance(value, bytes)
            out += value
    return bytes.fromhex(mti) + bitmap.to_bytes(8, "big") + out


def decode_body(body: bytes) -> tuple[str, dict[int, str | bytes]]:
    """The MTI and fields of a body (numeric as digit strings, 62 and 64 as bytes)."""
    mti = body[:2].hex()
    bitmap = int.from_bytes(body[2:10], "big")
    assert not bitmap >> 63, "secondary bitmap is not in the profile"
    position = 10
    fields: dict[int, str | bytes] = {}
    for number in range(2, 65):
        if not bitmap & (1 << (64 - number)):
            continue
        kind, max_length = FIELDS[number]
        if kind.startswith("LL"):
            prefix = 2 if kind.startswith("LLL") else 1
            length = int(body[position : position + prefix].hex())
            position += prefix
            assert length <= max_length, (number, length)
        else:
            length = max_length
        if kind[-1] in ("n", "z"):
            size = (length + 1) // 2
            digits = body[position : position + size].hex().upper()
            digits = digits[-length:] if kind == "n" else digits[:length]
            fields[number] = digits.replace("D", "=") if kind == "LLz" else digits
        else:
            size = length
            raw = body[position : position + size]
            fields[number] = raw if kind[-1] == "b" else raw.decode("ascii")
        position += size
    assert position == len(body), (position, len(body))
    return mti, fields


def _des(key: bytes, block: bytes, *, decrypt: bool = False) -> bytes:
    """DES (8-byte key) or 3DES (16-byte double-length key), ECB."""
    key = key * 3 if len(key) == 8 else key + key[:8]  # 24 bytes: K1 K2 K1
    cipher = Cipher(TripleDES(key), modes.ECB())
    worker = cipher.decryptor() if decrypt else cipher.encryptor()
    return worker.update(block) + worker.finalize()


def mac(mak: bytes, data: bytes) -> bytes:
    """DESIGN.md's CUP "ECB" MAC of ``data`` (MTI to the end of the last field before 64)."""
    data += b"\x00" * (-len(data) % 8)
    block = bytes(8)
    for start in range(0, len(data), 8):
        block = bytes(a ^ b for a, b in zip(block, data[start : start + 8], strict=True))
    text = block.hex().upper().encode("ascii")
    first = _des(mak, text[:8])
    mixed = bytes(a ^ b for a, b in zip(first, text[8:], strict=True))
    return _des(mak, mixed).hex().upper().encode("ascii")[:8]


def check_value(key: bytes) -> bytes:
    return _des(key, bytes(8))[:4]


def unwrap_keys(tmk: bytes, field62: bytes) -> tuple[bytes, bytes]:
    """(PIK, MAK) from a sign-on answer's field 62, their check values verified."""
    assert len(field62) == 40, len(field62)
    pik = _des(tmk, field62[:16], decrypt=True)
    mak = _des(tmk, field62[20:36], decrypt=True)[:8]
    assert check_value(pik) == field62[16:20] and check_value(mak) == field62[36:40]
    return pik, mak


def frame(body: bytes) -> bytes:
    whole = TPDU + HEADER + body
    return len(whole).to_bytes(2, "big") + whole


@dataclass
class Answer:
    mti: str
    fields: dict[int, str | bytes]
    tpdu: bytes
    header: bytes
    mac_ok: bool | None  # None: no field 64

    @property
    def code(self) -> str:
        return str(self.fields.get(39, ""))

    def text(self, number: int) -> str:
        value = self.fields[number]
        assert isinstance(value, str)
        return value

    @property
    def detail(self) -> dict[str, str]:
        raw = str(self.fields.get(63, ""))
        return dict(item.split("=", 1) for item in raw.split(";") if "=" in item)


def read_frame(sock: socket.socket) -> bytes:
    head = _read_exactly(sock, 2)
    return _read_exactly(sock, int.from_bytes(head, "big"))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("host closed the connection")
        data += chunk
    return data


def totals_half(debit_fen: int, debits: int, credit_fen: int, credits: int, code: int = 0) -> str:
    return f"{debit_fen:012d}{debits:03d}{credit_fen:012d}{credits:03d}{code}"


def field48_totals(domestic: str, foreign: str | None = None) -> str:
    return domestic + (foreign if foreign is not None else totals_half(0, 0, 0, 0))


@dataclass
class DesignTerminal:
    """One terminal on one socket: STAN and batch counters, MAK, and the requests it sends."""

    sock: socket.socket
    terminal_id: str
    merchant_id: str
    tmk: bytes
    stan: int = 0
    batch_no: int = 1
    mak: bytes | None = None
    sent: list[bytes] = field(default_factory=list)

    def next_stan(self) -> str:
        self.stan = self.stan % 999_999 + 1
        return f"{self.stan:06d}"

    def body(self, mti: str, fields: dict[int, str | bytes], *, mac_it: bool = True) -> bytes:
        fields = {41: self.terminal_id, 42: self.merchant_id, **fields}
        if mac_it and self.mak is not None:
            data = encode_body(mti, {**fields, 64: b""})  # bit 64 set, no bytes yet
            return data + mac(self.mak, data)
        return encode_body(mti, fields)

    def send(self, body: bytes) -> None:
        self.sent.append(body)
        self.sock.sendall(frame(body))

    def receive(self) -> Answer:
        whole = read_frame(self.sock)
        tpdu, header, body = whole[:5], whole[5:11], whole[11:]
        mti, fields = decode_body(body)
        mac_ok: bool | None = None
        if 64 in fields:
            assert self.mak is not None
            mac_ok = mac(self.mak, body[:-8]) == fields[64]
        return Answer(mti, fields, tpdu, header, mac_ok)

    def exchange(self, body: bytes) -> Answer:
        self.send(body)
        return self.receive()

    # --- messages -----------------------------------------------------------------------

    def sign_on_body(self) -> bytes:
        return self.body("0800", {11: self.next_stan(), 60: f"00{self.batch_no:06d}003"})

    def sign_on(self) -> Answer:
        answer = self.exchange(self.sign_on_body())
        assert answer.mti == "0810", answer.mti
        if answer.code == "00":
            keys = answer.fields[62]
            assert isinstance(keys, bytes)
            self.mak = unwrap_keys(self.tmk, keys)[1]
            self.batch_no = int(answer.text(60)[2:8])
        return answer

    def sale_body(
        self,
        amount_fen: int,
        pan: str | None,
        *,
        stan: str | None = None,
        expiry: str | None = "3012",
        track2: str | None = None,
        batch_no: int | None = None,
    ) -> bytes:
        fields: dict[int, str | bytes] = {
            3: "000000",
            4: f"{amount_fen:012d}",
            11: stan or self.next_stan(),
            22: "021" if track2 else "012",
            25: "00",
            49: "156",
            60: f"22{self.batch_no if batch_no is None else batch_no:06d}000",
        }
        if pan is not None:
            fields[2] = pan
        if expiry is not None:
            fields[14] = expiry
        if track2 is not None:
            fields[35] = track2
        return self.body("0200", fields)

    def sale(self, amount_fen: int, pan: str, **kwargs: object) -> Answer:
        return self.exchange(self.sale_body(amount_fen, pan, **kwargs))  # type: ignore[arg-type]

    def refund(self, amount_fen: int, pan: str, original_batch: int, original_stan: int) -> Answer:
        return self.exchange(self.refund_body(amount_fen, pan, original_batch, original_stan))

    def refund_body(
        self, amount_fen: int, pan: str, original_batch: int, original_stan: int
    ) -> bytes:
        fields: dict[int, str | bytes] = {
            2: pan,
            3: "200000",
            4: f"{amount_fen:012d}",
            11: self.next_stan(),
            22: "012",
            25: "00",
            49: "156",
            60: f"25{self.batch_no:06d}000",
            61: f"{original_batch:06d}{original_stan:06d}1207",
        }
        return self.body("0220", fields)

    def void(self, amount_fen: int, pan: str, original_stan: int) -> Answer:
        fields: dict[int, str | bytes] = {
            2: pan,
            3: "200000",
            4: f"{amount_fen:012d}",
            11: self.next_stan(),
            22: "012",
            25: "00",
            49: "156",
            60: f"23{self.batch_no:06d}000",
            61: f"{self.batch_no:06d}{original_stan:06d}1207",
        }
        return self.exchange(self.body("0200", fields))

    def settle(self, totals48: str) -> Answer:
        fields: dict[int, str | bytes] = {
            11: self.next_stan(),
            48: totals48,
            49: "156",
            60: f"00{self.batch_no:06d}201",
        }
        return self.exchange(self.body("0500", fields))

    def upload(self, records: list[tuple[int, str, int]]) -> Answer:
        """records: (STAN, PAN, amount fen), all domestic; at most 8."""
        data = f"{len(records):02d}" + "".join(
            f"00{stan:06d}{pan:0>20}{amount:012d}" for stan, pan, amount in records
        )
        fields: dict[int, str | bytes] = {
            11: self.next_stan(),
            48: data,
            60: f"00{self.batch_no:06d}201",
        }
        return self.exchange(self.body("0320", fields))

    def upload_end(self, total_records: int, *, after_balanced: bool = False) -> Answer:
        fields: dict[int, str | bytes] = {
            11: self.next_stan(),
            48: f"{total_records:04d}",
            60: f"00{self.batch_no:06d}{'202' if after_balanced else '207'}",
        }
        return self.exchange(self.body("0320", fields))


def connect(host: str, port: int) -> socket.socket:
    sock = socket.create_connection((host, port), timeout=ANSWER_TIMEOUT_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    return sock
