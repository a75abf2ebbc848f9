"""Response codes (field 39): the one table of what each means and what follows.

Every reader of a response code — the terminal engine deciding its next move,
a receipt, doctor's explanation, the dashboard — looks it up here, so the
meaning can change in one place. ``actor`` says who must act:

- ``none``:      nothing to do (approved)
- ``terminal``:  the terminal engine acts by itself (sign on again, reverse, upload)
- ``cashier``:   the cashier tells the cardholder / tries another card
- ``merchant``:  the merchant or the service desk must change something
- ``host``:      the acquirer's side must act (back office)

Two flags say what the terminal engine does by itself, and the engine reads
them here rather than keeping lists of its own (posbatch.terminal._financial,
"the reaction table"):

- ``sign_on_again``: the terminal must sign on (new working keys) before its
  next request — it drops its keys on a believed answer with this code (77, A0, 22).
- ``retry``: the request may be sent again. The outstanding queue resends a
  reversal or a refund (same STAN) on it — unless one of the two flags below
  says the same STAN cannot succeed. A fresh sale, void or refund is tried again
  under a new STAN when the code also asks for a sign-on (A0, 22), or names the
  batch as the cause (77 after recovery, 95 after settling the full batch);
  otherwise trying again is the cashier's choice.

Two more say why a ``retry`` code still refuses the request *as sent* — its
STAN — so that only a new STAN can go through:

- ``stan_spent``: the host records this answer under the STAN, and answers a
  repeat of a request it holds with the original answer: resending the same
  STAN only brings the same answer back (95: the batch is full).
- ``batch_no_refused``: the host refused the batch number the request is
  counted under, and took nothing (77). A request counted in a batch (a refund
  resent) must be made again under a new STAN once the batch is recovered. A
  reversal is never refused for its batch number (the host finds the original
  wherever it is), so a 77 to one only says "sign on": it is resent.

Which codes a host may send *without* a MAC of its own is not a flag of a code
but a rule of the wire profile (DESIGN.md "Keys and MAC"): :data:`SENT_WITHOUT_MAC`.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Final

__all__ = [
    "APPROVED",
    "BATCH_FULL",
    "BATCH_NUMBER_DIFFERS",
    "CODES",
    "CURRENCY_NOT_SUPPORTED",
    "DUPLICATE",
    "MAC_ERROR",
    "SENT_WITHOUT_MAC",
    "Actor",
    "ResponseCode",
    "describe",
    "lookup",
]


class Actor(enum.StrEnum):
    NONE = "none"
    TERMINAL = "terminal"
    CASHIER = "cashier"
    MERCHANT = "merchant"
    HOST = "host"


@dataclass(frozen=True, slots=True)
class ResponseCode:
    code: str
    meaning_zh: str
    meaning_en: str
    actor: Actor
    retry: bool  # may the same request be sent again later (with a new STAN)?
    sign_on_again: bool  # must the terminal sign on before its next request?
    cause_en: str
    step_en: str
    step_zh: str
    # Why a retry needs a new STAN (module docstring): most codes say neither.
    stan_spent: bool = False  # the host keeps this answer for the STAN (95)
    batch_no_refused: bool = False  # the request's batch number was refused (77)

    @property
    def approved(self) -> bool:
        return self.code == APPROVED


APPROVED: Final = "00"
# This profile's decisions (docs/host.md, "How it answers"): ISO 8583 has no code of
# its own for either, so each takes the nearest ISO meaning.
CURRENCY_NOT_SUPPORTED: Final = "40"  # ISO: requested function not supported
BATCH_FULL: Final = "95"  # ISO: reconcile error — the batch can no longer be reconciled
BATCH_NUMBER_DIFFERS: Final = "77"
DUPLICATE: Final = "94"
MAC_ERROR: Final = "A0"
# The only codes a host answers without a valid MAC of its own (DESIGN.md "Keys and
# MAC"): A0 to a request whose MAC failed, 77 to a terminal not signed on (no MAK).
SENT_WITHOUT_MAC: Final = frozenset({MAC_ERROR, BATCH_NUMBER_DIFFERS})

_T = Actor.TERMINAL
_C = Actor.CASHIER
_M = Actor.MERCHANT
_H = Actor.HOST

CODES: Final[dict[str, ResponseCode]] = {
    c.code: c
    for c in (
        ResponseCode(
            "00",
            "承兑或交易成功",
            "approved",
            Actor.NONE,
            False,
            False,
            "the host approved the request",
            "none",
            "无需操作",
        ),
        ResponseCode(
            "03",
            "无效商户",
            "invalid merchant",
            _M,
            False,
            False,
            "merchant ID unknown or not allowed for this terminal",
            "check the merchant ID configured on the terminal with the acquirer",
            "请与收单机构核对终端上配置的商户号",
        ),
        ResponseCode(
            "12",
            "无效交易",
            "invalid transaction",
            _C,
            False,
            False,
            "the transaction is not allowed in this state (e.g. void of a refund)",
            "check the transaction type and the original transaction",
            "请核对交易类型及原交易",
        ),
        ResponseCode(
            "13",
            "无效金额",
            "invalid amount",
            _C,
            False,
            False,
            "amount is zero, negative or above what the original allows",
            "re-enter the amount",
            "请重新输入金额",
        ),
        ResponseCode(
            "14",
            "无效卡号",
            "invalid card number",
            _C,
            False,
            False,
            "the card number fails its check digit or is not issued",
            "ask for another card",
            "请持卡人更换其他卡片",
        ),
        ResponseCode(
            "22",
            "终端状态与中心不符",
            "terminal state differs from the centre",
            _T,
            True,
            True,
            "the terminal and host disagree on its state",
            "sign on again, then retry",
            "请重新签到后再试",
        ),
        ResponseCode(
            "25",
            "找不到原始交易",
            "original transaction not found",
            _C,
            False,
            False,
            "the void/refund names a transaction the host does not have",
            "check the original STAN and batch number on the receipt",
            "请核对原交易凭证上的流水号和批次号",
        ),
        ResponseCode(
            "30",
            "报文格式错误",
            "format error",
            _T,
            False,
            False,
            "the message does not follow the wire profile",
            "report the terminal software version to the service desk",
            "请将终端软件版本报告给服务商",
        ),
        ResponseCode(
            "40",
            "请求的功能尚不支持(仅受理人民币 156)",
            "requested function not supported (only CNY, currency 156)",
            _M,
            False,
            False,
            "field 49 names a currency this acquirer does not settle: only 156 (CNY) is "
            "accepted, and a sale in another currency would be counted as CNY fen",
            "set the terminal's currency to CNY (156), or take the payment in CNY",
            "请将终端币种设为人民币(156)，或以人民币收款",
        ),
        ResponseCode(
            "51",
            "余额不足",
            "insufficient funds",
            _C,
            False,
            False,
            "the issuer refused: not enough funds",
            "ask for another card or a smaller amount",
            "请持卡人更换卡片或减少金额",
        ),
        ResponseCode(
            "54",
            "过期的卡",
            "expired card",
            _C,
            False,
            False,
            "the card's expiry date has passed",
            "ask for another card",
            "卡片已过期，请更换卡片",
        ),
        ResponseCode(
            "58",
            "不允许终端进行的交易",
            "transaction not permitted to terminal",
            _M,
            False,
            False,
            "the terminal is suspended or lacks this function",
            "call the service desk to check the terminal's status",
            "请联系服务商核查终端状态",
        ),
        ResponseCode(
            "61",
            "超出金额限制",
            "amount over limit",
            _C,
            False,
            False,
            "the amount is above the limit for this card or merchant",
            "split the payment or use another card",
            "请分笔支付或更换卡片",
        ),
        ResponseCode(
            "64",
            "原始金额错误",
            "amount differs from the original",
            _C,
            False,
            False,
            "a void must be for the full amount of the original sale",
            "void the full amount, or refund part of it instead",
            "撤销须为原交易全额；部分退款请用退货交易",
        ),
        ResponseCode(
            "68",
            "交易超时",
            "timeout",
            _T,
            True,
            False,
            "the host did not hear from the issuer in time",
            # A verified 68 is the host's answer: the sale is declined and not counted, so
            # the terminal has nothing to reverse (reversing toward an issuer that may
            # have approved is the host's work). The engine shows it; retrying is the
            # cashier's choice (terminal/_financial.py).
            "the transaction did not go through; try again",
            "交易未成功，请重试",
        ),
        ResponseCode(
            "77",
            "批次号与中心不符，请重新签到",
            "batch number differs from the centre — sign on again",
            _T,
            True,
            True,
            "the terminal's batch number differs from the host's "
            "(typed by hand, counters reset, response lost, host changed)",
            "sign on again; the terminal reconciles the batch automatically",
            "请重新签到，终端将自动核对批次",
            batch_no_refused=True,
        ),
        ResponseCode(
            "90",
            "日切进行中",
            "cut-over in progress",
            _T,
            True,
            False,
            "the host is closing its business day",
            "wait a minute and retry",
            "请稍候一分钟再试",
        ),
        ResponseCode(
            "94",
            "重复交易",
            "duplicate transaction",
            _T,
            False,
            False,
            "the same terminal, batch and STAN were sent before",
            "check the journal; the original answer stands",
            "请查看终端流水，以原交易结果为准",
        ),
        ResponseCode(
            "95",
            "交易笔数已满，请先结算",
            "batch full — settle first",
            _T,
            True,
            False,
            "one more transaction would make the batch unsettleable: field 48 counts at most "
            "999 debits and 999 credits per card class (domestic, foreign), and sums each "
            "amount in 12 digits of fen (field 63 R=FULL;F=... names the counter that is full)",
            "the terminal settles this batch and sends the transaction again in the next one",
            "终端将自动结算本批次，并在新批次中重新发送该交易",
            stan_spent=True,
        ),
        ResponseCode(
            "96",
            "系统故障",
            "system malfunction",
            _T,
            True,
            False,
            "the host failed to process the request",
            "retry later",
            "请稍后重试",
        ),
        ResponseCode(
            "97",
            "终端未登记",
            "terminal not registered",
            _M,
            False,
            False,
            "the host does not know this terminal ID",
            "call the service desk to register the terminal",
            "请联系服务商登记终端",
        ),
        ResponseCode(
            "A0",
            "MAC校验错，请重新签到",
            "MAC error — sign on again",
            _T,
            True,
            True,
            "the message authentication code did not verify (keys out of step)",
            "sign on again to get new working keys",
            "请重新签到以更新工作密钥",
        ),
    )
}


def lookup(code: str) -> ResponseCode:
    """The table row for ``code``; an unknown code is reported as an unknown decline."""
    found = CODES.get(code)
    if found is not None:
        return found
    return ResponseCode(
        code,
        f"未知应答码 {code}",
        f"unknown response code {code}",
        _H,
        False,
        False,
        "the host sent a code this terminal does not know",
        "call the service desk with the code",
        "请将应答码告知服务商",
    )


def describe(code: str) -> str:
    """``"77 批次号与中心不符… / batch number differs…"``: one line for a screen or receipt."""
    row = lookup(code)
    return f"{row.code} {row.meaning_zh} / {row.meaning_en}"
