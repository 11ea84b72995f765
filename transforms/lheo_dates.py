"""LHEO dates (AAAAMMJJ) with their precision.

LHEO writes unknown and partial dates inside the same 8-digit field: `00000000` is an
unknown start, `99999999` an unknown end, `AAAAMM00` a whole month and `AAAA0000` a whole
year. We keep the raw value and its precision, plus the first and last day it can mean,
so that checks can reason on bounds without ever crashing on a partial date.
"""

from __future__ import annotations

import calendar
from dataclasses import dataclass
from datetime import date
from functools import lru_cache
from typing import Literal

Precision = Literal["day", "month", "year", "unknown", "invalid"]


@dataclass(frozen=True, slots=True)
class LheoDate:
    """One LHEO date: the raw text, its precision, and the first and last day it covers."""

    raw: str
    precision: Precision
    first_day: date | None
    last_day: date | None

    @property
    def is_known(self) -> bool:
        return self.first_day is not None

    def iso(self) -> str | None:
        """The first day as ISO text for day precision, else None (partial or unknown)."""
        return self.first_day.isoformat() if self.precision == "day" and self.first_day else None


@lru_cache(maxsize=4096)
def parse_lheo_date(raw: str | None) -> LheoDate | None:
    """Parse an AAAAMMJJ field. Returns None for a missing field; never raises.

    Cached (results are immutable, so sharing them is safe): an offer file repeats the
    same few hundred dates across its sessions, and the reader parses every one."""
    if raw is None:
        return None
    text = raw.strip()
    if len(text) != 8 or not text.isdigit():
        return LheoDate(text, "invalid", None, None)
    if text in ("00000000", "99999999"):
        return LheoDate(text, "unknown", None, None)
    year, month, day = int(text[:4]), int(text[4:6]), int(text[6:])
    try:
        if month == 0 and day == 0:
            return LheoDate(text, "year", date(year, 1, 1), date(year, 12, 31))
        if day == 0:
            last = calendar.monthrange(year, month)[1]
            return LheoDate(text, "month", date(year, month, 1), date(year, month, last))
        exact = date(year, month, day)
    except ValueError:
        # Year 0, month 13, 30 February...: kept as written, flagged by the quality checks.
        return LheoDate(text, "invalid", None, None)
    return LheoDate(text, "day", exact, exact)
