"""Templates (Jinja2, autoescaped, strict) and the filters pages use to show money, time
and codes; CSV cells made safe for spreadsheets."""

from __future__ import annotations

import contextlib
import csv
import io
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import date, datetime
from typing import Any, Final

import jinja2
from markupsafe import Markup, escape

from posbatch.backoffice import Cutoff, beijing, mask_card_numbers, trading_day
from posbatch.batch.cards import quoted_as_typed
from posbatch.batch.codes import lookup
from posbatch.batch.money import format_fen
from posbatch.errors import ConfigError
from posbatch.wire import encode_totals

__all__ = ["CSV_BOM", "Renderer", "csv_lines", "safe_cell"]

CSV_BOM: Final = "\ufeff"  # spreadsheets then read the file as UTF-8 (Chinese text)
_FORMULA_STARTS: Final = ("=", "+", "-", "@", "\t", "\r")
CSV_CHUNK_CHARS: Final = 64 * 1024  # a streamed CSV is sent in pieces of whole lines this big


def safe_cell(value: object) -> str:
    """A CSV cell a spreadsheet will not run as a formula: one that begins with
    = + - @ (or a tab / carriage return) gets a leading apostrophe."""
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def csv_lines(header: Sequence[str], rows: Iterable[Sequence[object]]) -> Iterator[bytes]:
    """The CSV file in pieces of about CSV_CHUNK_CHARS (for a streamed response), BOM first.

    Not a piece per line: a streamed response asks a worker thread for each piece of a
    plain iterator and sends each one on its own, which made a 100,000-row export take
    17 s (12 s of it those round trips); a piece of whole lines costs them once per ~64 KiB.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\r\n")
    buffer.write(CSV_BOM)
    writer.writerow([safe_cell(cell) for cell in header])
    for row in rows:
        writer.writerow([safe_cell(cell) for cell in row])
        if buffer.tell() >= CSV_CHUNK_CHARS:
            yield buffer.getvalue().encode("utf-8")
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue().encode("utf-8")


CARD_TYPE_TEXT: Final = {"00": "00 境内 domestic", "01": "01 境外 foreign"}


def card_type_text(code: str | None) -> str:
    """A card type as people read it: field 48's code with its side (a merchant reading an
    export saw "00" or "01" beside the card, and could not tell why a line cost 2.50 %)."""
    return "" if not code else CARD_TYPE_TEXT.get(code, code)


def _fen(amount_fen: int | None) -> str:
    return "" if amount_fen is None else format_fen(amount_fen)


def _bj(moment: datetime | None, layout: str = "%Y-%m-%d %H:%M:%S") -> str:
    return "" if moment is None else beijing(moment).strftime(layout)


def _code_en(code: str | None) -> str:
    return "" if not code else lookup(code).meaning_en


def _code_zh(code: str | None) -> str:
    return "" if not code else lookup(code).meaning_zh


def _batch_no(batch_no: int | None) -> str:
    return "" if batch_no is None else f"{batch_no:06d}"


_ROW: Final = (
    "<tr><td>{time}</td><td>{day}</td><td>{merchant}</td>"
    '<td><a href="/terminals/{terminal}">{terminal}</a></td>'
    '<td><a href="/batches/{batch_id}">{batch_no}</a></td><td>{stan}</td><td>{kind}</td>'
    '<td class="num">{amount}</td><td class="mono">{card}</td><td>{status}</td>'
    '<td title="{code_en}">{code} {code_zh}</td><td class="mono">{rrn}</td></tr>'
)


class Renderer:
    """One Jinja2 environment for the console; ``cutoff()`` decides the trading days shown
    (the office's cut-off: fixed, or the acquirer's schedule as clearing uses it)."""

    def __init__(self, *, cutoff: Callable[[], Cutoff]) -> None:
        self._cutoff = cutoff
        self.env = jinja2.Environment(
            loader=jinja2.PackageLoader("posbatch.web", "templates"),
            autoescape=jinja2.select_autoescape(["html", "svg"], default=True),
            undefined=jinja2.StrictUndefined,
            trim_blocks=True,
            lstrip_blocks=True,
        )
        self.env.filters.update(
            fen=_fen,
            bj=_bj,
            code_en=_code_en,
            code_zh=_code_zh,
            batch_no=_batch_no,
            stan=lambda stan: "" if stan is None else f"{stan:06d}",
            tday=self.trading_day,
            totals=lambda totals: "" if totals is None else encode_totals(totals),
            masked=lambda text: mask_card_numbers(str(text)),
            card_type=card_type_text,
        )
        self.env.globals["transaction_rows"] = self.transaction_rows

    def trading_day(self, moment: datetime | None) -> str:
        return "" if moment is None else trading_day(moment, cutoff=self._cutoff()).isoformat()

    def transaction_rows(self, rows: Iterable[Any]) -> Markup:
        """The <tr> of each transaction: the page's hottest loop, one format per row (every
        value escaped) instead of a dozen template expressions."""
        out = []
        for r in rows:
            local = beijing(r.created_at)
            meaning = lookup(r.response_code)
            out.append(
                _ROW.format(
                    time=f"{local:%Y-%m-%d %H:%M:%S}",
                    day=trading_day(r.created_at, cutoff=self._cutoff()).isoformat(),
                    merchant=escape(r.merchant_id),
                    terminal=escape(r.terminal_id),
                    batch_id=int(r.batch_id),
                    batch_no=f"{r.batch_no:06d}",
                    stan=f"{r.stan:06d}",
                    kind=escape(r.kind),
                    amount=format_fen(r.amount_fen),
                    card=escape(r.pan_masked),
                    status=escape(r.status),
                    code_en=escape(meaning.meaning_en),
                    code=escape(r.response_code),
                    code_zh=escape(meaning.meaning_zh),
                    rrn=escape(r.rrn or ""),
                )
            )
        return Markup("".join(out))  # noqa: S704 - every value above is escaped or a number

    def render(self, name: str, **context: Any) -> str:
        return self.env.get_template(name).render(**context)

    def markup(self, text: str) -> Markup:
        return Markup(text)  # noqa: S704 - only for our own SVG, built with escaped parts


def iso_day(text: str | None, default: date, *, name: str = "date") -> date:
    """``YYYY-MM-DD`` from the URL parameter ``name``, or ``default``; anything else is a
    ConfigError that names the parameter and the form (it said "a value is not valid")."""
    if not text:
        return default
    if len(text) == 10 and text.isascii() and text[4] == "-" and text[7] == "-":
        with contextlib.suppress(ValueError):
            return date.fromisoformat(text)
    raise ConfigError(f"{name}{quoted_as_typed(text)} must be a real date written YYYY-MM-DD")
