"""A minimal test terminal for host tests: builds request frames, keeps the MAK, reads answers."""

from __future__ import annotations

import socket
from collections.abc import Callable
from dataclasses import dataclass, field

from posbatch.batch.model import Kind, SettlementTotals
from posbatch.host import HostCore, HostReply, HostSession, HostStore
from posbatch.host.issuer import TEST_PAN_APPROVED
from posbatch.host.sealing import KeyEncryptionKey
from posbatch.wire import (
    BatchUploadEndRequest,
    BatchUploadRequest,
    Frame,
    FrameReader,
    Header,
    Message,
    OriginalTransaction,
    RefundRequest,
    Request,
    ReversalRequest,
    SaleRequest,
    SettlementRequest,
    SignOnRequest,
    SignOnResponse,
    Tpdu,
    UploadRecord,
    VoidRequest,
    decode_message,
    encode_frame,
    encode_message,
    unwrap_working_keys,
)
from testbed import MASTER_KEY, MERCHANT_ID, START, TERMINAL_ID, StepClock, counting_bytes

PAN = TEST_PAN_APPROVED
# Every store the host tests open over the same data seals under this KEK.
TEST_KEK = KeyEncryptionKey(bytes(range(32)), "the host tests' KEK")


def new_core(store: HostStore) -> HostCore:
    return HostCore(store, clock=StepClock(), random_bytes=counting_bytes())


def open_store(url: str, *, terminals: tuple[str, ...] = (TERMINAL_ID,)) -> HostStore:
    store = HostStore.open(url, pan_key=b"k" * 32, kek=TEST_KEK)
    for terminal_id in terminals:
        store.add_terminal(MERCHANT_ID, terminal_id, MASTER_KEY, now=START)
    return store


def frame_of(message: Message, mak: bytes | None) -> bytes:
    return encode_frame(Frame(Tpdu(), Header(), encode_message(message, mak=mak)))


def read_reply(reply: HostReply) -> Message:
    assert len(reply.frames) == 1, reply
    reader = FrameReader()
    frames = reader.feed(reply.frames[0])
    return decode_message(frames[0].body)


@dataclass
class Terminal:
    """Sends requests through ``send`` (bytes → list of answer frames) and tracks STAN and MAK."""

    send: Callable[[bytes], list[bytes]]
    terminal_id: str = TERMINAL_ID
    merchant_id: str = MERCHANT_ID
    master_key: bytes = MASTER_KEY
    batch_no: int = 1
    stan: int = 0
    mak: bytes | None = None
    pan: str = PAN
    sent: list[Request] = field(default_factory=list)

    def next_stan(self) -> int:
        self.stan = self.stan % 999_999 + 1
        return self.stan

    def request(self, message: Request, *, mak: bytes | None = None) -> Message:
        self.sent.append(message)
        answers = self.send(frame_of(message, mak if mak is not None else self.mak))
        assert len(answers) == 1, answers
        return decode_message(FrameReader().feed(answers[0])[0].body)

    def sign_on(self) -> SignOnResponse:
        answer = self.request(
            SignOnRequest(self.terminal_id, self.merchant_id, self.next_stan(), self.batch_no)
        )
        assert isinstance(answer, SignOnResponse)
        if answer.response_code == "00":
            assert answer.working_keys is not None
            self.mak = unwrap_working_keys(self.master_key, answer.working_keys).mak
            self.batch_no = answer.batch_no
        return answer

    def sale(self, amount_fen: int, **extra: object) -> Message:
        return self.request(
            SaleRequest(
                self.terminal_id, self.merchant_id, self.next_stan(), self.batch_no, amount_fen,
                extra.pop("pan", self.pan), **extra,  # type: ignore[arg-type]
            )
        )  # fmt: skip

    def void(self, original_stan: int, amount_fen: int, *, batch_no: int | None = None) -> Message:
        batch = self.batch_no if batch_no is None else batch_no
        return self.request(
            VoidRequest(
                self.terminal_id, self.merchant_id, self.next_stan(), batch, amount_fen,
                self.pan, OriginalTransaction(batch, original_stan),
            )
        )  # fmt: skip

    def refund(self, original_batch_no: int, original_stan: int, amount_fen: int) -> Message:
        return self.request(
            RefundRequest(
                self.terminal_id, self.merchant_id, self.next_stan(), self.batch_no, amount_fen,
                self.pan, OriginalTransaction(original_batch_no, original_stan),
            )
        )  # fmt: skip

    def reverse(
        self, stan: int, amount_fen: int, *, kind: Kind = Kind.SALE, batch_no: int | None = None
    ) -> Message:
        return self.request(
            ReversalRequest(
                self.terminal_id, self.merchant_id, stan,
                self.batch_no if batch_no is None else batch_no, amount_fen, self.pan,
                original_kind=kind,
            )
        )  # fmt: skip

    def settle(self, totals: SettlementTotals, *, batch_no: int | None = None) -> Message:
        return self.request(
            SettlementRequest(
                self.terminal_id, self.merchant_id, self.next_stan(),
                self.batch_no if batch_no is None else batch_no, totals,
            )
        )  # fmt: skip

    def upload(self, records: tuple[UploadRecord, ...]) -> Message:
        return self.request(
            BatchUploadRequest(
                self.terminal_id, self.merchant_id, self.next_stan(), self.batch_no, records
            )
        )

    def upload_end(self, total_records: int, *, after_balanced: bool = False) -> Message:
        return self.request(
            BatchUploadEndRequest(
                self.terminal_id, self.merchant_id, self.next_stan(), self.batch_no,
                total_records, after_balanced=after_balanced,
            )
        )  # fmt: skip


def session_terminal(core: HostCore, **kwargs: object) -> Terminal:
    """A Terminal wired to an in-memory HostSession."""
    session = HostSession(core)

    def send(data: bytes) -> list[bytes]:
        return [frame for reply in session.receive_data(data) for frame in reply.frames]

    return Terminal(send, **kwargs)  # type: ignore[arg-type]


ANSWER_TIMEOUT_S = 10.0


@dataclass
class RunningHost:
    host: str
    port: int
    store: HostStore

    def connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=ANSWER_TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def terminal(self, sock: socket.socket, **kwargs: object) -> Terminal:
        return Terminal(socket_sender(sock), **kwargs)  # type: ignore[arg-type]


def read_frame(sock: socket.socket) -> bytes:
    """One whole frame (with its length prefix) from ``sock``."""
    head = _read_exactly(sock, 2)
    return head + _read_exactly(sock, int.from_bytes(head, "big"))


def _read_exactly(sock: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = sock.recv(size - len(data))
        if not chunk:
            raise ConnectionError("host closed the connection")
        data += chunk
    return data


def socket_sender(sock: socket.socket) -> Callable[[bytes], list[bytes]]:
    def send(frame: bytes) -> list[bytes]:
        sock.sendall(frame)
        return [read_frame(sock)]

    return send
