"""Exports at real size: bounded reading, oversized cells and lines, runaway quotes,
encoding contradictions after the deciding window (docs/kairos-exports.md "Reading files").

Reading is tested without a database; the last tests ingest on SQLite and PostgreSQL to
show what reaches `quarantine` and the ledger. Speed and peak RSS at 100 k and 1 M lines
are benchmark figures (`tools/bench.py`, docs/performance.md), not unit-test goals: the
memory tests here only check that a 50 MB line is never allocated whole.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import tracemalloc
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from kairos_export_fixtures import (
    PEOPLE,
    PSEUDONYM_KEY,
    SESSION_A,
    SIRET_A,
    SIRET_M,
    TRAINING_PLANS_HEADER,
    insert_session,
    personal_data,
    render,
    training_plan,
)

from core.db import get_engine, migrate
from pipelines.kairos_exports import MalformedFileError, contracts, ingest_export
from pipelines.kairos_exports.lines import LINE_CHARS_MAX, RECORD_LINES_MAX
from pipelines.kairos_exports.reading import (
    ENCODING_WINDOW,
    BadLine,
    Record,
    file_sha256,
    open_export,
)

MB = 1_000_000
FIELD_LIMIT = csv.field_size_limit()
NAME = TRAINING_PLANS_HEADER.index("c_nomcorrespondance")


def plans(count: int = 6, **values: str) -> list[dict[str, str]]:
    return [training_plan(PEOPLE[i % len(PEOPLE)], **values) for i in range(count)]


def write(path: Path, rows: Sequence[dict[str, str]], separator: str = "|") -> Path:
    path.write_bytes(render(TRAINING_PLANS_HEADER, rows, separator=separator))
    return path


def splice(path: Path, placeholder: str, raw: bytes) -> None:
    """Put `raw` bytes where the csv writer wrote `placeholder` (unquoted)."""
    data = path.read_bytes()
    assert data.count(placeholder.encode()) == 1
    path.write_bytes(data.replace(placeholder.encode(), raw))


def items(path: Path) -> list[Record | BadLine]:
    return list(open_export(path, required=contracts.REQUIRED_TRAINING_PLANS).records())


def shape(found: Sequence[Record | BadLine]) -> list[tuple[str, int]]:
    return [("bad" if isinstance(i, BadLine) else "ok", i.line) for i in found]


def bad(found: Sequence[Record | BadLine]) -> list[BadLine]:
    return [i for i in found if isinstance(i, BadLine)]


def assert_no_personal_data(text: str) -> None:
    leaked = [value for value in personal_data() if value in text]
    assert not leaked, leaked


# -- memory: never a whole file, never a whole line ---------------------------------------


def _huge_line_file(path: Path, size: int, newline_after: bool) -> Path:
    """Header, line 2, then line 3 whose name cell holds `size` characters."""
    head = render(TRAINING_PLANS_HEADER, plans(2))
    first, second = head.split(b"\r\n")[1:3]
    cells = second.split(b"|")
    with path.open("wb") as out:
        out.write(head.split(b"\r\n")[0] + b"\r\n" + first + b"\r\n")
        out.write(b"".join(cell + b"|" for cell in cells[:NAME]))
        block = b"Dupontel" * 125_000
        for _ in range(size // len(block)):
            out.write(block)
        out.write(b"|" + b"|".join(cells[NAME + 1 :]))
        if newline_after:
            out.write(b"\r\n" + first + b"\r\n")
    return path


def _peak_while(function: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = function()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.parametrize("newline_after", [True, False], ids=["then-a-line", "at-the-end"])
def test_a_50_mb_line_is_one_bad_line_read_in_bounded_memory(
    tmp_path: Path, newline_after: bool
) -> None:
    path = _huge_line_file(tmp_path / "plans.csv", 50 * MB, newline_after)
    found, peak = _peak_while(lambda: items(path))
    assert peak < 8 * MB, f"peak {peak / MB:.1f} MB while reading a 50 MB line"
    expected = [("ok", 2), ("bad", 3)] + ([("ok", 4)] if newline_after else [])
    assert shape(found) == expected
    [line] = bad(found)
    assert line.column == "c_nomcorrespondance"
    assert line.message == (
        f"column c_nomcorrespondance: line longer than {LINE_CHARS_MAX} characters: skipped"
    )


def test_a_50_mb_file_of_one_line_is_refused_in_bounded_memory(tmp_path: Path) -> None:
    path = tmp_path / "one-line.csv"
    with path.open("wb") as out:
        out.write(b"|".join(h.encode() for h in TRAINING_PLANS_HEADER))
        for _ in range(50):
            out.write(b"x" * MB)

    def refused() -> str:
        with pytest.raises(MalformedFileError) as caught:
            open_export(path, required={})
        return str(caught.value)

    message, peak = _peak_while(refused)
    assert peak < 8 * MB
    assert f"header longer than {LINE_CHARS_MAX} characters" in message


def test_the_file_hash_is_computed_in_chunks(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_bytes(b"a|b\r\n" + b"x" * (30 * MB))
    digest, peak = _peak_while(lambda: file_sha256(path))
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest()
    assert peak < 2 * MB
    assert file_sha256(tmp_path / "missing.csv") is None


# -- a cell over the csv field limit ------------------------------------------------------


@pytest.mark.parametrize("separator", ["|", ";"])
@pytest.mark.parametrize("quoted", [False, True], ids=["plain", "quoted"])
def test_a_cell_over_the_field_limit_is_one_bad_line(
    tmp_path: Path, separator: str, quoted: bool
) -> None:
    path = write(tmp_path / "plans.csv", plans(), separator)
    long_name = ("Dupontel " * (FIELD_LIMIT // 9 + 10)).encode()
    splice(path, PEOPLE[2].last, b'"' + long_name + b'"' if quoted else long_name)
    found = items(path)
    assert shape(found) == [("ok", 2), ("ok", 3), ("bad", 4), ("ok", 5), ("ok", 6), ("ok", 7)]
    [line] = bad(found)
    assert line.column == "c_nomcorrespondance"
    assert line.message == (
        f"column c_nomcorrespondance: field of more than {FIELD_LIMIT} characters"
    )
    assert_no_personal_data(line.message)


# -- runaway quotes -----------------------------------------------------------------------


def test_an_unclosed_quote_is_one_bad_line_and_the_next_lines_are_read(tmp_path: Path) -> None:
    """The reported case: 6 data lines, the third opens a quote that never closes (today:
    1 line read, nothing said)."""
    path = write(tmp_path / "plans.csv", plans(dc_lblformation="Comptable"))
    data = path.read_bytes().split(b"\r\n")
    data[3] = data[3].replace(b"Comptable", b'"abc')
    path.write_bytes(b"\r\n".join(data))
    found = items(path)
    assert shape(found) == [("ok", 2), ("ok", 3), ("bad", 4), ("ok", 5), ("ok", 6), ("ok", 7)]
    [line] = bad(found)
    assert line.message.startswith("unclosed quote? a quoted field opened on line 4 ")
    assert "the lines after it are read on their own" in line.message
    assert [r.get("c_individulocal") for r in found if isinstance(r, Record)] == [
        PEOPLE[i].local_id for i in (0, 1, 3, 4, 5)
    ]


def test_a_runaway_quote_closing_on_a_later_line_is_caught_by_the_field_count(
    tmp_path: Path,
) -> None:
    """In a `;` file every line quotes liste_financeur ("10;13"): the runaway closes on the
    next line's opening quote, and the merged record has too many fields."""
    path = write(tmp_path / "plans.csv", plans(), separator=";")
    splice_line(path, 4, b";PRF;", b';"abc;')  # c_dispositifformation, after liste_financeur
    found = items(path)
    assert shape(found) == [("ok", 2), ("ok", 3), ("bad", 4), ("ok", 5), ("ok", 6), ("ok", 7)]
    assert "leaves" in bad(found)[0].message
    assert all(r.get("liste_financeur") == "10;13" for r in found if isinstance(r, Record))


def test_a_runaway_quote_with_the_right_field_count_is_caught_as_malformed(
    tmp_path: Path,
) -> None:
    """Line 5 quotes the same column, without a separator inside: merging lines 4 and 5
    would give exactly the header's field count. The runaway then closes on line 5's
    opening quote, followed by text: not well-formed CSV, so it is still refused."""
    rows = plans(dc_lblformation="Comptable")
    rows[3]["dc_lblformation"] = 'Titre "pro"'
    path = write(tmp_path / "plans.csv", rows)
    splice_line(path, 4, b"Comptable", b'"abc')
    found = items(path)
    assert shape(found) == [("ok", 2), ("ok", 3), ("bad", 4), ("ok", 5), ("ok", 6), ("ok", 7)]
    assert "closes in the middle of a value" in bad(found)[0].message
    assert found[3].line == 5 and isinstance(found[3], Record)
    assert found[3].get("dc_lblformation") == 'Titre "pro"'


def test_a_quote_never_closed_in_a_long_file_stops_at_the_line_cap(tmp_path: Path) -> None:
    path = write(tmp_path / "plans.csv", plans(300, dc_lblformation="Comptable"))
    splice_line(path, 4, b"Comptable", b'"abc')
    found = items(path)
    assert len(found) == 300
    assert shape(found)[2] == ("bad", 4)
    assert f"still open after {RECORD_LINES_MAX} lines" in bad(found)[0].message
    assert [i.line for i in found] == list(range(2, 302))
    assert len(bad(found)) == 1


def test_a_quote_still_open_at_the_end_of_the_file(tmp_path: Path) -> None:
    path = write(tmp_path / "plans.csv", plans(3, dc_lblformation="Comptable"))
    splice_line(path, 4, b"Comptable", b'"abc')
    found = items(path)
    assert shape(found) == [("ok", 2), ("ok", 3), ("bad", 4)]
    assert "still open at the end of the file" in bad(found)[0].message


def splice_line(path: Path, number: int, old: bytes, new: bytes) -> None:
    lines = path.read_bytes().split(b"\r\n")
    assert old in lines[number - 1]
    lines[number - 1] = lines[number - 1].replace(old, new, 1)
    path.write_bytes(b"\r\n".join(lines))


# -- legitimate multi-line fields ---------------------------------------------------------

ADDRESS = 'Bâtiment "B"; 2e étage | porte 3\nCour intérieure\r\nEscalier 2'


@pytest.mark.parametrize("separator", ["|", ";"])
@pytest.mark.parametrize("quoting", [csv.QUOTE_MINIMAL, csv.QUOTE_ALL], ids=["minimal", "all"])
def test_quoted_fields_with_line_breaks_and_separators_stay_one_record(
    tmp_path: Path, separator: str, quoting: int
) -> None:
    rows = plans(4)
    rows[1]["dc_lblformation"] = ADDRESS
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=separator, lineterminator="\r\n", quoting=quoting)
    writer.writerow(TRAINING_PLANS_HEADER)
    writer.writerows([[row[c] for c in TRAINING_PLANS_HEADER] for row in rows])
    path = tmp_path / "plans.csv"
    path.write_bytes(buffer.getvalue().encode("utf-8"))
    found = items(path)
    # the second record spans physical lines 3-5: the next one starts on line 6
    assert shape(found) == [("ok", 2), ("ok", 3), ("ok", 6), ("ok", 7)]
    assert isinstance(found[1], Record)
    assert found[1].values["dc_lblformation"] == ADDRESS


@pytest.mark.parametrize("breaks", [RECORD_LINES_MAX - 1, RECORD_LINES_MAX])
def test_a_quoted_field_may_span_at_most_the_line_cap(tmp_path: Path, breaks: int) -> None:
    rows = plans(3)
    rows[1]["dc_lblformation"] = "\n".join(f"ligne {i}" for i in range(breaks + 1))
    path = write(tmp_path / "plans.csv", rows)
    found = items(path)
    last = 3 + breaks + 1
    if breaks < RECORD_LINES_MAX:
        assert shape(found) == [("ok", 2), ("ok", 3), ("ok", last)]
        return
    # one line over: the record is refused and its continuation lines read on their own
    assert shape(found)[:2] == [("ok", 2), ("bad", 3)]
    assert found[-1].line == last and isinstance(found[-1], Record)
    assert len(found) == 2 + breaks + 1


def test_lone_carriage_returns_still_end_lines(tmp_path: Path) -> None:
    path = tmp_path / "mac.csv"
    path.write_bytes(render(TRAINING_PLANS_HEADER, plans(3)).replace(b"\r\n", b"\r"))
    assert shape(items(path)) == [("ok", 2), ("ok", 3), ("ok", 4)]


def test_a_crlf_cut_by_the_line_limit_makes_no_extra_line(tmp_path: Path) -> None:
    """A line of exactly the limit, CR included: its LF comes in the next read."""
    header = "|".join(f"c{i}" for i in range(10))
    width = (LINE_CHARS_MAX - 1 - 9) // 10
    cells = ["x" * width] * 9 + ["x" * (LINE_CHARS_MAX - 1 - 9 - 9 * width)]
    long_line = "|".join(cells)
    assert len(long_line) + 1 == LINE_CHARS_MAX
    path = tmp_path / "edge.csv"
    path.write_text(f"{header}\r\n{long_line}\r\n{'|'.join('abcdefghij')}\r\n", newline="")
    found = list(open_export(path, required={}).records())
    assert shape(found) == [("ok", 2), ("ok", 3)]


# -- the encoding, decided on a window, contradicted later ---------------------------------


def _big_file(path: Path, lines: int, encoding: str, last: dict[str, str]) -> Path:
    rows = [*plans(lines), training_plan(PEOPLE[0], **last)]
    path.write_bytes(render(TRAINING_PLANS_HEADER, rows, encoding=encoding))
    assert path.stat().st_size > ENCODING_WINDOW + 100_000
    return path


def test_a_later_line_contradicting_utf8_is_quarantined(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "plans.csv", 14000, "utf-8", {"dc_lblformation": "MARKER"})
    splice(path, "MARKER", "Comptabilité".encode("cp1252"))
    found = items(path)
    assert len(found) == 14001
    [line] = bad(found)
    assert line.line == 14002
    assert line.message.startswith("bytes not valid in UTF-8 on line 14002")
    assert_no_personal_data(line.message)


def test_a_later_undefined_windows_1252_byte_is_quarantined(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "plans.csv", 14000, "cp1252", {"dc_lblformation": "MARKER"})
    splice(path, "MARKER", b"Compta\x81")
    table = open_export(path, required=contracts.REQUIRED_TRAINING_PLANS)
    assert table.encoding == "cp1252"
    found = list(table.records())
    assert [(i.line, i.message.split(" (")[0]) for i in bad(found)] == [
        (14002, "bytes not valid in Windows-1252 on line 14002")
    ]


def test_a_later_nul_byte_is_quarantined(tmp_path: Path) -> None:
    path = _big_file(tmp_path / "plans.csv", 14000, "utf-8", {"dc_lblformation": "MARKER"})
    splice(path, "MARKER", b"Compta\x00")
    assert [(i.line, i.message) for i in bad(items(path))] == [
        (14002, "NUL byte on line 14002: binary content")
    ]


def test_the_deciding_window_starts_at_the_first_non_ascii_byte(tmp_path: Path) -> None:
    """More than the window of plain ASCII, then Windows-1252 accents: read as such."""
    ascii_rows = [
        training_plan(PEOPLE[1], c_nomcorrespondance="Benaissa", c_prenomcorrespondance="Karim")
        for _ in range(14000)
    ]
    rows = [*ascii_rows, training_plan(PEOPLE[5])]  # Lefèvre Françoise
    path = tmp_path / "plans.csv"
    path.write_bytes(render(TRAINING_PLANS_HEADER, rows, encoding="cp1252"))
    table = open_export(path, required=contracts.REQUIRED_TRAINING_PLANS)
    assert table.encoding == "cp1252"
    last = list(table.records())[-1]
    assert isinstance(last, Record) and last.get("c_nomcorrespondance") == "Lefèvre"


# -- through the ingestion: quarantine rows and the ledger ---------------------------------


@pytest.fixture
def db(db_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv("KAIROS_PSEUDONYM_KEY", PSEUDONYM_KEY.decode())
    engine = get_engine(db_url)
    migrate(engine)
    insert_session(engine, SESSION_A, SIRET_A, SIRET_M)
    engine.dispose()
    yield db_url


def _rows(url: str, sql: str) -> list[dict[str, Any]]:
    engine = get_engine(url)
    try:
        with engine.connect() as conn:
            return [dict(r._mapping) for r in conn.execute(sa.text(sql))]
    finally:
        engine.dispose()


def test_ingestion_quarantines_each_bad_line_and_loads_the_rest(db: str, tmp_path: Path) -> None:
    """Eight data lines: a 2 MB line on line 3, a name over the field limit on line 5, an
    unclosed quote on line 7. Every line is counted, three are quarantined with their
    line and column, no personal value reaches the quarantine, the five others load."""
    rows = [training_plan(PEOPLE[i], dc_lblformation="Comptable") for i in range(8)]
    path = write(tmp_path / "plans.csv", rows)
    splice(path, PEOPLE[1].last, "Benaïssa ".encode() * (2 * 2**20 // 9))
    splice(path, PEOPLE[3].last, b"Ferreira " * (FIELD_LIMIT // 9 + 1))
    splice_line(path, 7, b"Comptable", b'"abc')
    result = ingest_export(path, kind="training-plans", db_url=db)
    assert result.status == "succeeded"
    assert result.counts["lines_read"] == 8
    assert result.counts["quarantined"] == 3
    assert result.counts["inserted"] == 5
    quarantined = _rows(db, "SELECT line, path, reasons FROM quarantine ORDER BY line")
    assert [(q["line"], q["path"]) for q in quarantined] == [
        (3, "c_nomcorrespondance"),
        (5, "c_nomcorrespondance"),
        (7, ""),
    ]
    messages = [json.loads(q["reasons"])[0]["message"] for q in quarantined]
    assert f"longer than {LINE_CHARS_MAX} characters" in messages[0]
    assert f"more than {FIELD_LIMIT} characters" in messages[1]
    assert "unclosed quote?" in messages[2]
    assert_no_personal_data(json.dumps(quarantined, default=str, ensure_ascii=False))
    [run] = _rows(
        db, f"SELECT status, counts_json, error FROM run_ledger WHERE id = {result.run_id}"
    )
    assert run["status"] == "succeeded" and run["error"] is None
    assert json.loads(run["counts_json"])["lines_read"] == 8
