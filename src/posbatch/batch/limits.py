"""Every limit of the domain, defined once: counters, amounts, card numbers, batch capacity.

Naming: ``<THING>_<MIN|MAX|FIRST>``, units last (``AMOUNT_FEN_MAX``). The wire
codecs, the host's rules, the terminal's checks and the back office all read
these names; a width of the wire (n6, n12, n..19) and the rule it sets are the
same number, so they are one definition.
"""

from __future__ import annotations

from typing import Final

__all__ = [
    "AMOUNT_FEN_MAX",
    "BATCH_NO_DIGITS",
    "BATCH_NO_FIRST",
    "BATCH_NO_MAX",
    "MONTHS_IN_YEAR",
    "PAN_DIGITS_MAX",
    "PAN_DIGITS_MIN",
    "STAN_FIRST",
    "STAN_MAX",
    "TOTAL_AMOUNT_FEN_MAX",
    "TOTAL_COUNT_MAX",
    "UPLOAD_RECORDS_MAX",
]

# STAN (流水号, field 11, n6) and batch number (批次号, 60.2, n6): 000001..999999, wrapping.
STAN_FIRST: Final = 1
STAN_MAX: Final = 999_999
BATCH_NO_FIRST: Final = 1
BATCH_NO_MAX: Final = 999_999
BATCH_NO_DIGITS: Final = 6
# One transaction's amount (field 4, n12), in fen.
AMOUNT_FEN_MAX: Final = 999_999_999_999
# A card number (field 2, LLVAR n..19); this profile takes 12..19 digits.
PAN_DIGITS_MIN: Final = 12
PAN_DIGITS_MAX: Final = 19
MONTHS_IN_YEAR: Final = 12  # a card expiry YYMM (field 14) names month 01..12
# What one half of settlement field 48 can carry: n3 counts and n12 sums, so a batch
# holds at most 999 debits and 999 credits per card class.
TOTAL_COUNT_MAX: Final = 999
TOTAL_AMOUNT_FEN_MAX: Final = 999_999_999_999
# Batch upload (0320): records per message.
UPLOAD_RECORDS_MAX: Final = 8
