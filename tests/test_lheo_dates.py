"""LHEO dates keep their precision and never crash (DOMAIN.md, "LHEO format facts")."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from transforms.lheo_dates import parse_lheo_date


@pytest.mark.parametrize(
    ("raw", "precision", "first", "last"),
    [
        ("20261123", "day", date(2026, 11, 23), date(2026, 11, 23)),
        ("20240200", "month", date(2024, 2, 1), date(2024, 2, 29)),  # leap year
        ("20230200", "month", date(2023, 2, 1), date(2023, 2, 28)),
        ("20260000", "year", date(2026, 1, 1), date(2026, 12, 31)),
        ("00000000", "unknown", None, None),
        ("99999999", "unknown", None, None),
        ("20230230", "invalid", None, None),  # 30 February
        ("20261300", "invalid", None, None),  # month 13
        ("00001225", "invalid", None, None),  # year 0
        ("2026112", "invalid", None, None),
        ("2026-11-2", "invalid", None, None),
    ],
)
def test_forms(raw: str, precision: str, first: date | None, last: date | None) -> None:
    parsed = parse_lheo_date(raw)
    assert parsed is not None
    assert (parsed.raw, parsed.precision, parsed.first_day, parsed.last_day) == (
        raw,
        precision,
        first,
        last,
    )
    assert parsed.is_known == (first is not None)


def test_missing_field_is_none() -> None:
    assert parse_lheo_date(None) is None


def test_iso_only_for_exact_days() -> None:
    assert parse_lheo_date("20261123").iso() == "2026-11-23"  # type: ignore[union-attr]
    assert parse_lheo_date("20261100").iso() is None  # type: ignore[union-attr]


@given(st.text(max_size=12))
def test_never_raises(raw: str) -> None:
    parsed = parse_lheo_date(raw)
    assert parsed is not None
    if parsed.first_day is not None:
        assert parsed.last_day is not None and parsed.first_day <= parsed.last_day
