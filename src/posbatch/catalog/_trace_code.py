"""China's drug traceability code (药品追溯码): read and check its form. Pure.

What the code is (sources in docs/catalog.md, "The drug traceability code"):

- it identifies one *sales package* of a medicine (一物一码): no two packs share
  a code and a code is never reused, so a code sold twice means a counterfeit
  pack, a resold "returned-flow" pack (回流药) or a swapped sale — which is why
  medical insurance has pharmacies scan every pack at dispensing (全量采集) and
  flags codes that come back;
- three kinds are on packs in China: the 20-digit code of the national
  platform (码上放心, the former 中国药品电子监管码), by far the most common,
  printed as a Code 128 barcode; codes of a manufacturer's own scheme; and
  GS1 codes (a DataMatrix with (01) GTIN + (21) serial), mostly on imported
  medicines;
- the 20-digit code starts with its 7-digit drug identification code
  (药品标识码: holder, product, dosage form, strength, pack size), which is how
  dispensing systems map a scanned code to the medicine; the other 13 digits
  identify the pack (serial) and carry the platform's verification digits,
  whose algorithm is not published — so a till cannot check them offline;
- the platform's own code checker drops anything that is not 20 digits
  starting with 8 before looking it up.

So posbatch reads a 20-digit code starting with 8 as a traceability code,
maps its first 7 digits to the product whose ``trace_prefix`` they are, keeps
the code on the sale line (quantity 1: one pack), and the back office refuses
a code already sold and not returned. A GS1 pack's unit identity is its
(01)+(21) serial, handled the same way as any serial.
"""

from __future__ import annotations

from dataclasses import dataclass

from posbatch.errors import ScanError

__all__ = [
    "TRACE_CODE_DIGITS",
    "TRACE_CODE_FIRST_DIGIT",
    "TRACE_PREFIX_DIGITS",
    "DrugTraceCode",
    "check_trace_prefix",
    "looks_like_trace_code",
    "parse_trace_code",
]

TRACE_CODE_DIGITS = 20
TRACE_PREFIX_DIGITS = 7
TRACE_CODE_FIRST_DIGIT = "8"
_NEAR_LENGTHS = range(16, 25)
"""All-digit scans this long starting with 8 are told how long a traceability code is."""


@dataclass(frozen=True, slots=True)
class DrugTraceCode:
    """A 20-digit drug traceability code, checked for form."""

    code: str

    @property
    def prefix(self) -> str:
        """The 7-digit drug identification code (药品标识码): which medicine and pack size."""
        return self.code[:TRACE_PREFIX_DIGITS]

    @property
    def pack_part(self) -> str:
        """The 13 digits that tell this pack from every other (serial + verification)."""
        return self.code[TRACE_PREFIX_DIGITS:]


def looks_like_trace_code(text: str) -> bool:
    """Whether ``text`` is meant as a traceability code: all digits, starting with 8,
    about 20 long (a wrong length then gets a precise error instead of a GS1 one)."""
    return (
        text.isascii()
        and text.isdigit()
        and text.startswith(TRACE_CODE_FIRST_DIGIT)
        and len(text) in _NEAR_LENGTHS
    )


def parse_trace_code(text: str) -> DrugTraceCode:
    """The code in ``text``, or :class:`ScanError` saying what is wrong with its form."""
    if not text.isascii() or not text.isdigit():
        raise ScanError(f"a drug traceability code (药品追溯码) is digits only, got {text!r}")
    if len(text) != TRACE_CODE_DIGITS:
        raise ScanError(
            f"a drug traceability code (药品追溯码) has {TRACE_CODE_DIGITS} digits, "
            f"{text!r} has {len(text)}: scan it again"
        )
    if not text.startswith(TRACE_CODE_FIRST_DIGIT):
        raise ScanError(
            f"a drug traceability code (药品追溯码) starts with {TRACE_CODE_FIRST_DIGIT}, "
            f"{text!r} does not"
        )
    return DrugTraceCode(text)


def check_trace_prefix(text: str) -> str:
    """A product's ``trace_prefix``: 7 digits starting with 8, or ValueError saying why not."""
    if not (
        len(text) == TRACE_PREFIX_DIGITS
        and text.isascii()
        and text.isdigit()
        and text.startswith(TRACE_CODE_FIRST_DIGIT)
    ):
        raise ValueError(
            f"trace_prefix {text!r} is not a drug identification code "
            f"({TRACE_PREFIX_DIGITS} digits starting with {TRACE_CODE_FIRST_DIGIT})"
        )
    return text
