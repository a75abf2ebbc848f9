"""The clearing rules in force: fee schedules, merchant terms, card BINs, calendar, cut-off.

Theory of operation
-------------------
Everything that decides a merchant's money is *effective-dated*: each change
takes effect from a trading day and the history is kept, so a statement of a
past day is computed with what was in force that day — it never changes
because a rate changed since.

- :class:`FeeSchedule` — a rate per card class (domestic/foreign ×
  debit/credit), an optional cap per transaction per class, and the extra
  *instant* rate paid by a merchant on T+0/D+0. A merchant's own schedule
  wins; without one, the acquirer's *standard* schedule (``merchant_id``
  None) applies; with neither, clearing refuses (a fee is never guessed).
- :class:`MerchantTerms` — the settlement cycle (T+1, T+0, D+0, D+1) and the
  void and refund fee rules; a merchant's own, else the standard terms, else
  :data:`DEFAULT_TERMS` (T+1, void fee returned, refund fee kept).
- :class:`CardBin` — which card numbers are debit and which credit: the
  longest BIN prefix in force wins. A prefix of 2..6 digits matches the
  card's first six (its masked form); an 8-digit BIN (ISO/IEC 7812-1:2017)
  matches through the keyed hash of the card's first eight that the host
  keeps instead of digits 7-8 (``bin8_key``; docs/clearing.md says why), and
  beats any shorter prefix of it. A card no entry matches is priced as **credit** —
  the uncapped rate, so a missing BIN entry never undercharges — and its
  statement line is flagged "BIN unknown" for the operator to fix.
- the working-day calendar and the cut-off schedule (:mod:`._calendar`).

When two entries take effect on the same day, the later one entered wins (a
correction). :class:`ClearingRules` bundles them; it is pure and cheap to
query (answers are cached per merchant and day).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Final, TypeVar

from posbatch.batch.money import format_fen, parse_yuan
from posbatch.clearing._calendar import (
    DEFAULT_CUTOFFS,
    Arrival,
    CutoffSchedule,
    SettlementCycle,
    WorkingDayCalendar,
    arrival_date,
    parse_day,
    trading_day,
)
from posbatch.clearing._fees import (
    CAP_FEN_MAX,
    REFUND_FEE_DEFAULT,
    VOID_FEE_DEFAULT,
    CardClass,
    CreditFeeRule,
    Funding,
    check_rate,
    fee_from_ratio,
    parse_rate,
    rate_ratio,
)
from posbatch.errors import ClearingError, PosbatchError

__all__ = [
    "BIN_DIGITS_MAX",
    "BIN_DIGITS_MIN",
    "BIN_DIGITS_SHOWN",
    "CAP_FEN_MIN",
    "DEFAULT_TERMS",
    "FUNDING_UNKNOWN_BIN",
    "CardBin",
    "ClearingRules",
    "FeeSchedule",
    "MerchantTerms",
    "parse_fee_schedule",
]

# A BIN entry is 2..6 digits (matched against the first 6 of the masked card, the only
# digits kept in clear: DESIGN.md) or an 8-digit BIN (ISO/IEC 7812-1:2017), matched through
# the keyed hash of the card's first 8 the host keeps (never in clear). No 7: no scheme
# issues 7-digit BINs, and a second hash per card would be needed for them.
BIN_DIGITS_MIN: Final = 2
BIN_DIGITS_SHOWN: Final = 6
BIN_DIGITS_MAX: Final = 8
FUNDING_UNKNOWN_BIN: Final = Funding.CREDIT
# A fee cap is 0.01 yuan and more: a cap of 0.00 would make every fee of its class 0, and
# fee tables often write 0 for "no cap" — the opposite — so it is refused, saying what to do.
CAP_FEN_MIN: Final = 1
_CAP_ZERO: Final = (
    "a fee cap of 0.00 is refused (it would make every such fee 0.00): leave the cap out "
    "for no cap, or give the rate as 0% for no fee"
)
_ZERO: Final = re.compile(r"0+(?:\.0*)?|\.0+")
MERCHANT_ID_CHARS: Final = 15


def check_merchant_id(merchant_id: str | None) -> str | None:
    """``merchant_id`` if it is None (standard) or 15 printable ASCII characters."""
    if merchant_id is not None and (
        len(merchant_id) != MERCHANT_ID_CHARS
        or not merchant_id.isascii()
        or not merchant_id.isprintable()
    ):
        raise ClearingError(f"merchant_id must be {MERCHANT_ID_CHARS} ascii characters")
    return merchant_id


@dataclass(frozen=True, slots=True)
class FeeSchedule:
    """A merchant's (or, with ``merchant_id`` None, the standard) fees from a trading day on."""

    merchant_id: str | None
    effective_from: date
    rates: Mapping[CardClass, Decimal]
    caps_fen: Mapping[CardClass, int | None] = field(default_factory=dict)
    instant_rate: Decimal = Decimal(0)
    schedule_id: int = 0  # order of entry: the later of two on the same day wins
    _ratios: dict[CardClass, tuple[int, int, int | None]] = field(
        init=False, repr=False, compare=False
    )
    _instant: tuple[int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        check_merchant_id(self.merchant_id)
        missing = [card_class.value for card_class in CardClass if card_class not in self.rates]
        if missing:
            raise ClearingError(f"a fee schedule needs a rate for {', '.join(missing)}")
        ratios: dict[CardClass, tuple[int, int, int | None]] = {}
        for card_class in CardClass:
            cap = self.caps_fen.get(card_class)
            if cap == 0:
                raise ClearingError(_CAP_ZERO)
            if cap is not None and not CAP_FEN_MIN <= cap <= CAP_FEN_MAX:
                raise ClearingError(
                    f"a fee cap is {format_fen(CAP_FEN_MIN)}..{format_fen(CAP_FEN_MAX)} yuan, "
                    f"not {format_fen(cap)}"
                )
            numerator, denominator = rate_ratio(self.rates[card_class])
            ratios[card_class] = (numerator, denominator, cap)
        object.__setattr__(self, "_ratios", ratios)
        object.__setattr__(self, "_instant", rate_ratio(check_rate(self.instant_rate)))

    def cap_fen(self, card_class: CardClass) -> int | None:
        return self.caps_fen.get(card_class)

    def sale_fee_fen(self, amount_fen: int, card_class: CardClass, *, instant: bool) -> int:
        """The fee of a sale of ``amount_fen`` on a card of ``card_class``."""
        numerator, denominator, cap = self._ratios[card_class]
        fee = fee_from_ratio(amount_fen, numerator, denominator, cap)
        if instant:
            fee += fee_from_ratio(amount_fen, *self._instant, None)
        return fee


def parse_fee_schedule(
    merchant_id: str | None,
    effective_from: str,
    rates: Mapping[CardClass, str],
    caps: Mapping[CardClass, str | None],
    instant: str,
) -> FeeSchedule:
    """A fee schedule from what a person typed: rates like ``0.60%``, caps in yuan (None: no
    cap), the first trading day ``YYYY-MM-DD``. What ``posbatch host set-fees`` and the back
    office's fee page both call; the first value that does not parse is the error."""
    parsed_rates = {
        card_class: _naming(f"the {card_class.value} rate", parse_rate, text)
        for card_class, text in rates.items()
    }
    parsed_caps = {
        card_class: None
        if text is None
        else _naming(f"the {card_class.value} cap", _parse_cap, text)
        for card_class, text in caps.items()
    }
    return FeeSchedule(
        merchant_id,
        parse_day(effective_from),
        parsed_rates,
        parsed_caps,
        instant_rate=_naming("the instant rate", parse_rate, instant),
    )


def _parse_cap(text: str) -> int:
    """A cap in yuan; 0 is refused by name (a cap of 0 would make every fee 0 — and many
    fee tables write 0 for "no cap", the opposite)."""
    if _ZERO.fullmatch(text.strip()):
        raise ClearingError(_CAP_ZERO)
    return parse_yuan(text)


_Parsed = TypeVar("_Parsed")


def _naming(what: str, parse: Callable[[str], _Parsed], text: str) -> _Parsed:
    """``parse(text)``; its error says which of the schedule's nine figures it is (five look
    alike: '0.6' alone does not tell the debit rate from the foreign credit one)."""
    try:
        return parse(text)
    except PosbatchError as exc:
        raise ClearingError(f"{exc} — {what}") from exc


@dataclass(frozen=True, slots=True)
class MerchantTerms:
    """Settlement cycle and credit fee rules from a trading day on (merchant_id None: standard)."""

    merchant_id: str | None
    effective_from: date
    cycle: SettlementCycle = SettlementCycle.T1
    void_fee: CreditFeeRule = VOID_FEE_DEFAULT
    refund_fee: CreditFeeRule = REFUND_FEE_DEFAULT
    terms_id: int = 0

    def __post_init__(self) -> None:
        check_merchant_id(self.merchant_id)


DEFAULT_TERMS: Final = MerchantTerms(None, date.min)


@dataclass(frozen=True, slots=True)
class CardBin:
    """Cards whose number starts with ``prefix`` are ``funding``, from a trading day on."""

    prefix: str
    funding: Funding
    effective_from: date
    bin_id: int = 0

    def __post_init__(self) -> None:
        if not (
            (
                BIN_DIGITS_MIN <= len(self.prefix) <= BIN_DIGITS_SHOWN
                or len(self.prefix) == BIN_DIGITS_MAX
            )
            and self.prefix.isascii()
            and self.prefix.isdigit()
        ):
            raise ClearingError(
                f"a BIN prefix is {BIN_DIGITS_MIN}..{BIN_DIGITS_SHOWN} digits or an "
                f"{BIN_DIGITS_MAX}-digit BIN, not {self.prefix!r}"
            )


_Dated = TypeVar("_Dated", FeeSchedule, MerchantTerms, CardBin)


def _in_force(entries: Iterable[_Dated], day: date, order: str) -> _Dated | None:
    best: _Dated | None = None
    for entry in entries:
        if entry.effective_from <= day and (
            best is None
            or (entry.effective_from, getattr(entry, order))
            > (best.effective_from, getattr(best, order))
        ):
            best = entry
    return best


@dataclass(frozen=True, slots=True)
class ClearingRules:
    """Everything in force, over time: the one input a statement needs besides the records."""

    fee_schedules: tuple[FeeSchedule, ...] = ()
    merchant_terms: tuple[MerchantTerms, ...] = ()
    card_bins: tuple[CardBin, ...] = ()
    calendar: WorkingDayCalendar = field(default_factory=WorkingDayCalendar)
    cutoffs: CutoffSchedule = DEFAULT_CUTOFFS
    # An 8-digit BIN → the key the host keeps for cards that begin with it (a keyed hash:
    # see ClearingRecord.bin8_key); None: 8-digit entries match no card.
    bin8_key: Callable[[str], str] | None = field(default=None, repr=False, compare=False)
    _schedules_of: dict[str | None, list[FeeSchedule]] = field(
        init=False, repr=False, compare=False
    )
    _terms_of: dict[str | None, list[MerchantTerms]] = field(init=False, repr=False, compare=False)
    _cache: dict[tuple[str, object, object], object] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        schedules: dict[str | None, list[FeeSchedule]] = {}
        for schedule in self.fee_schedules:
            schedules.setdefault(schedule.merchant_id, []).append(schedule)
        terms: dict[str | None, list[MerchantTerms]] = {}
        for entry in self.merchant_terms:
            terms.setdefault(entry.merchant_id, []).append(entry)
        object.__setattr__(self, "_schedules_of", schedules)
        object.__setattr__(self, "_terms_of", terms)
        object.__setattr__(self, "_cache", {})

    def trading_day(self, moment: datetime) -> date:
        return trading_day(moment, self.cutoffs)

    def schedule_for(self, merchant_id: str | None, day: date) -> FeeSchedule:
        """The fee schedule of ``merchant_id`` (None: the standard one) on trading day ``day``."""
        key = ("schedule", merchant_id, day)
        found = self._cache.get(key)
        if found is None:
            found = _in_force(self._schedules_of.get(merchant_id, ()), day, "schedule_id")
            if found is None:
                found = _in_force(self._schedules_of.get(None, ()), day, "schedule_id")
            if found is None:
                whose = "the standard" if merchant_id is None else f"merchant {merchant_id}"
                raise ClearingError(
                    f"no fee schedule in force for {whose} on {day}: set one "
                    "with posbatch host set-fees (--merchant-id, or --standard for all)",
                    # a merchant of the host's records (15 digits, not a card): the operator
                    # must see whose schedule is missing
                    shown_ids=frozenset(() if merchant_id is None else (merchant_id,)),
                )
            self._cache[key] = found
        assert isinstance(found, FeeSchedule)
        return found

    def terms_for(self, merchant_id: str | None, day: date) -> MerchantTerms:
        """The settlement cycle and credit fee rules of ``merchant_id`` on trading day ``day``
        (None: the standard terms)."""
        key = ("terms", merchant_id, day)
        found = self._cache.get(key)
        if found is None:
            found = (
                _in_force(self._terms_of.get(merchant_id, ()), day, "terms_id")
                or _in_force(self._terms_of.get(None, ()), day, "terms_id")
                or DEFAULT_TERMS
            )
            self._cache[key] = found
        assert isinstance(found, MerchantTerms)
        return found

    def funding_of(
        self, pan_masked: str, day: date, bin8_key: str | None = None
    ) -> tuple[Funding, bool]:
        """Debit or credit for a card on ``day``, and whether an entry matched: an 8-digit
        BIN whose key is the card's ``bin8_key`` (the host's keyed hash of its first eight
        digits), else the longest prefix of its first six."""
        bin6 = pan_masked[:BIN_DIGITS_SHOWN]
        key = ("bin", (bin6, bin8_key), day)
        found = self._cache.get(key)
        if found is None:
            table = self._bins_on(day)
            found = (FUNDING_UNKNOWN_BIN, False)
            funding = None if bin8_key is None else self._bins8_on(day).get(bin8_key)
            if funding is not None:
                found = (funding, True)
            else:
                for digits in range(len(bin6), BIN_DIGITS_MIN - 1, -1):
                    funding = table.get(bin6[:digits])
                    if funding is not None:
                        found = (funding, True)
                        break
            self._cache[key] = found
        assert isinstance(found, tuple)
        return found

    def bins8_in_force(self, day: date) -> bool:
        """Whether any 8-digit BIN is in force on ``day`` (none: a card's first 6 decide,
        and the pricing caches need not tell cards apart by their 8-digit key)."""
        return bool(self._bins8_on(day))

    def _bins8_on(self, day: date) -> dict[str, Funding]:
        """The key of each 8-digit BIN in force on ``day`` → its funding."""
        key = ("bins8", None, day)
        table = self._cache.get(key)
        if table is None:
            keyed = self.bin8_key
            table = {
                keyed(prefix): funding
                for prefix, funding in self._bins_on(day).items()
                if len(prefix) == BIN_DIGITS_MAX and keyed is not None
            }
            self._cache[key] = table
        assert isinstance(table, dict)
        return table

    def _bins_on(self, day: date) -> dict[str, Funding]:
        key = ("bins", None, day)
        table = self._cache.get(key)
        if table is None:
            best: dict[str, CardBin] = {}
            for entry in self.card_bins:
                if entry.effective_from > day:
                    continue
                held = best.get(entry.prefix)
                if held is None or (entry.effective_from, entry.bin_id) > (
                    held.effective_from,
                    held.bin_id,
                ):
                    best[entry.prefix] = entry
            table = {prefix: entry.funding for prefix, entry in best.items()}
            self._cache[key] = table
        assert isinstance(table, dict)
        return table

    def card_class(
        self, card_type: str, pan_masked: str, day: date, bin8_key: str | None = None
    ) -> tuple[CardClass, bool]:
        funding, known = self.funding_of(pan_masked, day, bin8_key)
        return CardClass.of(card_type, funding), known

    def arrival(self, merchant_id: str, day: date) -> Arrival:
        """When ``merchant_id``'s net of trading day ``day`` arrives."""
        cycle = self.terms_for(merchant_id, day).cycle
        key = ("arrival", cycle, day)
        found = self._cache.get(key)
        if found is None:
            found = arrival_date(day, cycle, self.calendar)
            self._cache[key] = found
        assert isinstance(found, Arrival)
        return found
