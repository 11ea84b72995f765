"""Parsing of single export values: dates, SIRET, times, vocabularies.

Each parser returns the clean value or raises `ValueError` with a message that is safe to
store in quarantine and logs. A wrong cell may hold anything (a phone number typed in the
SIRET column, a name in a date column), so a message quotes the cell only when it has the
shape of what was expected (a date-like string, a 14-digit SIRET); otherwise it gives
its length.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from datetime import date, datetime

from stdnum.fr import siret as stdnum_siret

from pipelines.kairos_exports.reading import normalise_header

_DATE_FORMATS = ("%d/%m/%Y", "%Y-%m-%d", "%Y%m%d", "%d-%m-%Y")
_DATE_SHAPE = re.compile(r"\d{1,4}[/-]\d{1,2}[/-]\d{1,4}")
_TIME_SHAPE = re.compile(r"\d{1,2}\s*[:h]\s*\d{0,2}")


def shown(value: str, shape: re.Pattern[str]) -> str:
    """The cell quoted if it has the expected shape, else only its length."""
    text = value.strip()
    if shape.fullmatch(text):
        return f"'{text}'"
    return f"of {len(text)} characters"


def parse_date(value: str) -> date | None:
    """`JJ/MM/AAAA` (the KAIROS exports), `AAAA-MM-JJ`, `AAAAMMJJ`; an optional time part
    (France Travail extracts often print `00:00:00`) is ignored. Blank is None."""
    text = value.strip()
    if not text:
        return None
    text = re.split(r"[ T]", text, maxsplit=1)[0]
    for fmt in _DATE_FORMATS:
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise ValueError(f"invalid date {shown(value, _DATE_SHAPE)} (expected JJ/MM/AAAA)")


# What real France Travail exports write in a SIRET column that has no SIRET (DOMAIN.md,
# "Public export formats around KAIROS"): the SQL literal NULL, an all-zero SIRET.
_ABSENT_SIRETS = frozenset({"null", "none", "n/a", "na", "-"})


def siret_text(value: str) -> str | None:
    """The SIRET as written (blanks and dots removed), or None when the cell says there is
    none: blank, `NULL`, all zeros. Not checked: see `siret_is_valid`."""
    text = re.sub(r"[\s.]", "", value)
    if not text or text.lower() in _ABSENT_SIRETS or set(text) == {"0"}:
        return None
    return text


def siret_is_valid(text: str) -> bool:
    """14 digits with a valid Luhn key (python-stdnum knows La Poste's exception)."""
    return len(text) == 14 and text.isdigit() and bool(stdnum_siret.is_valid(text))


def siret_problem(text: str) -> str:
    """Why `text` (from `siret_text`) is not a valid SIRET, quoting it only when it has the
    shape of one."""
    if not text.isdigit():
        return f"SIRET of {len(text)} characters is not numeric"
    if len(text) != 14:
        return f"SIRET has {len(text)} digits, expected 14"
    return f"SIRET '{text}' fails its check digit"


def parse_siret(value: str) -> str | None:
    """14 digits with a valid Luhn key (stdnum knows La Poste's exception); blanks and
    dots are tolerated, an all-zero SIRET is refused. Blank is None."""
    text = re.sub(r"[\s.]", "", value)
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"SIRET of {len(text)} characters is not numeric")
    if len(text) != 14:
        raise ValueError(f"SIRET has {len(text)} digits, expected 14")
    if set(text) == {"0"}:
        raise ValueError("SIRET is all zeros")
    if not stdnum_siret.is_valid(text):
        raise ValueError(f"SIRET '{text}' fails its check digit")
    return text


def parse_time(value: str) -> str | None:
    """`HH:MM`, `HHhMM`, `HHh` → `HH:MM`. Blank is None."""
    text = value.strip().lower()
    if not text:
        return None
    match = re.fullmatch(r"(\d{1,2})\s*[:h]\s*(\d{2})?(?::\d{2})?", text)
    if not match:
        raise ValueError(f"invalid time {shown(value, _TIME_SHAPE)} (expected HH:MM)")
    hours, minutes = int(match.group(1)), int(match.group(2) or 0)
    if hours > 23 or minutes > 59:
        raise ValueError(f"invalid time {shown(value, _TIME_SHAPE)}")
    return f"{hours:02d}:{minutes:02d}"


def parse_count(value: str) -> int | None:
    """A non-negative integer (capacity). Blank is None."""
    text = value.strip()
    if not text:
        return None
    if not text.isdigit():
        raise ValueError(f"invalid number (a cell of {len(text)} characters)")
    return int(text)


def parse_flag(value: str) -> bool | None:
    """oui/non, 1/0, true/false. Blank is None."""
    text = normalise_header(value)
    if not text:
        return None
    if text in {"oui", "o", "1", "true", "vrai", "yes"}:
        return True
    if text in {"non", "n", "0", "false", "faux", "no"}:
        return False
    raise ValueError("invalid yes/no value (expected oui or non)")


def parse_choice(value: str, vocabulary: Mapping[str, str], what: str) -> str | None:
    """Map a label to its code through `vocabulary` (keys in `normalise_header` form)."""
    text = normalise_header(value)
    if not text:
        return None
    try:
        return vocabulary[text]
    except KeyError:
        expected = ", ".join(sorted(set(vocabulary.values())))
        raise ValueError(f"unknown {what} (expected {expected})") from None


def choice(vocabulary: Mapping[str, str], what: str) -> Callable[[str], str | None]:
    """A parser for one vocabulary (see `parse_choice`)."""

    def parse(value: str) -> str | None:
        return parse_choice(value, vocabulary, what)

    return parse


def parse_financeurs(value: str) -> str | None:
    """`liste_financeur` is `;`-separated codes (DOMAIN.md); stored as `;`-joined, trimmed."""
    codes = [c.strip() for c in re.split(r"[;,]", value) if c.strip()]
    return ";".join(codes) or None
