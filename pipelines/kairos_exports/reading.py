"""Reading KAIROS / France Travail CSV exports: encoding, separator, header, records.

French exports come as UTF-8 (with or without BOM) or Windows-1252, separated by `|`
(the documented KAIROS and training-plan formats) or `;` (what a spreadsheet re-save
produces; DOMAIN.md "Public export formats around KAIROS"). Both are detected here, once,
so the loaders only see dictionaries keyed by canonical column names.

Files are streamed: the encoding is decided on a window of the first bytes, then the text
is decoded incrementally and fed to the csv module one physical line at a time
(`lines.PhysicalLines`), so memory stays bounded whatever the size of the file or of a
line. The rules (docs/kairos-exports.md "Reading files"):

* whole-file problems (undecodable start, no separator, a missing required column) raise
  an `ExportFileError` subclass naming the file and the column: the caller refuses the
  file whole;
* line-level problems (wrong number of fields, a cell over the csv field limit, a line
  over `LINE_CHARS_MAX`, bytes the chosen encoding cannot decode, a runaway quote) are
  returned as a `BadLine` with the line number, so they can be quarantined while the rest
  of the file loads. Messages name the column and the line, never the content.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Final

from pipelines.kairos_exports.lines import (
    LINE_CHARS_MAX,
    RECORD_LINES_MAX,
    Line,
    LineTooLong,
    PhysicalLines,
    RecordTooLong,
)

# Bytes that decide between UTF-8 and Windows-1252, counted from the first non-ASCII byte
# (ASCII reads the same in both, so it is no evidence either way).
ENCODING_WINDOW: Final = 4 * 2**20
_NON_ASCII: Final = re.compile(b"[\x80-\xff]")
_CP1252_UNDEFINED: Final = re.compile(b"[\x81\x8d\x8f\x90\x9d]")
_CHUNK: Final = 2**16
_ENCODING_NAMES: Final = {"utf-8": "UTF-8", "utf-8-sig": "UTF-8", "cp1252": "Windows-1252"}


class ExportFileError(Exception):
    """A KAIROS export that is refused whole; the message names the file (and column)."""

    def __init__(self, file: Path | str, message: str) -> None:
        self.file = str(file)
        super().__init__(f"{self.file}: {message}")


class UndecodableFileError(ExportFileError):
    """Neither UTF-8 nor Windows-1252 decodes the file (or it is binary / UTF-16)."""


class MissingColumnError(ExportFileError):
    """The header lacks a column the contract requires."""

    def __init__(self, file: Path | str, columns: Sequence[str]) -> None:
        self.columns = list(columns)
        names = ", ".join(f"'{c}'" for c in self.columns)
        plural = "s" if len(self.columns) > 1 else ""
        super().__init__(file, f"missing required column{plural} {names}")


class MalformedFileError(ExportFileError):
    """Empty file, no recognisable separator, or a header we cannot parse."""


def normalise_header(name: str) -> str:
    """Canonical form of a column name: no accents, lower case, `_` for blanks.

    Exports are re-saved by hand in spreadsheets: "Prénom RGC", "prenom rgc" and
    "PRENOM_RGC" must all be the same column.
    """
    decomposed = unicodedata.normalize("NFKD", name.strip().strip("\ufeff"))
    ascii_only = "".join(c for c in decomposed if not unicodedata.combining(c))
    return "_".join(ascii_only.lower().replace("-", " ").replace("_", " ").split())


def file_sha256(path: Path) -> str | None:
    """SHA-256 of the file, read in chunks (exports reach gigabytes); None if unreadable."""
    try:
        with path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest()
    except OSError:
        return None


def detect_encoding(stream: BinaryIO, file: Path | str) -> str:
    """The encoding ("utf-8-sig", "utf-8" or "cp1252"), decided on the first bytes.

    UTF-16 BOMs and NUL bytes in the first `ENCODING_WINDOW` bytes refuse the file (not a
    text export). A UTF-8 BOM means UTF-8. Otherwise the window that decides starts at
    the first non-ASCII byte and runs for `ENCODING_WINDOW` bytes: UTF-8 if it decodes,
    else Windows-1252, whose five undefined bytes make a truly undecodable file fail. A
    later byte that contradicts the choice only spoils its own line (`records`
    quarantines it). The bytes are read and checked a chunk at a time, never kept.
    """
    chunk = stream.read(_CHUNK)
    if chunk.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UndecodableFileError(file, "UTF-16 is not supported: export as UTF-8 or Windows-1252")
    bom = chunk.startswith(codecs.BOM_UTF8)
    offset = len(codecs.BOM_UTF8) if bom else 0  # file offset of chunk[0]
    chunk = chunk[offset:]
    decoder = codecs.getincrementaldecoder("utf-8")()
    window_end: int | None = None  # where the deciding window stops (file offset)
    utf8_error: int | None = None
    cp1252_error: int | None = None
    while chunk:
        following = stream.read(_CHUNK)
        if offset < ENCODING_WINDOW and b"\x00" in chunk[: ENCODING_WINDOW - offset]:
            raise UndecodableFileError(file, "binary content (NUL bytes): not a CSV export")
        first = 0
        if window_end is None:
            found = _NON_ASCII.search(chunk)
            if found is None:  # ASCII reads the same in both encodings: no evidence yet
                offset += len(chunk)
                chunk = following
                continue
            first = found.start()
            window_end = offset + first + ENCODING_WINDOW
        part = chunk[first : max(0, window_end - offset)]
        closes = not following and window_end >= offset + len(chunk)  # the file ends here
        if utf8_error is None:
            pending = len(decoder.getstate()[0])  # bytes of a sequence the last chunk cut
            try:
                decoder.decode(part, final=closes)
            except UnicodeDecodeError as exc:
                utf8_error = offset + first + exc.start - pending
        if cp1252_error is None and (undefined := _CP1252_UNDEFINED.search(part)):
            cp1252_error = offset + first + undefined.start()
        if offset + len(chunk) >= window_end or (utf8_error is not None and bom):
            break
        offset += len(chunk)
        chunk = following
    if bom:
        if utf8_error is not None:
            raise UndecodableFileError(file, f"UTF-8 BOM but invalid UTF-8 at byte {utf8_error}")
        return "utf-8-sig"
    if utf8_error is None:
        return "utf-8"  # also a pure ASCII file
    if cp1252_error is None:
        return "cp1252"
    raise UndecodableFileError(
        file, f"neither UTF-8 nor Windows-1252 (undefined byte at offset {cp1252_error})"
    )


def detect_separator(header_line: str, file: Path | str) -> str:
    """`|` or `;`, whichever splits the header more; refuse a header with neither."""
    counts = {sep: header_line.count(sep) for sep in ("|", ";")}
    best = max(counts, key=lambda sep: counts[sep])
    if counts[best] == 0:
        raise MalformedFileError(file, "header has neither '|' nor ';' separators")
    return best


@dataclass(frozen=True)
class Record:
    """One CSV record: its first physical line number and its values by canonical column."""

    line: int
    values: Mapping[str, str]

    def get(self, column: str) -> str:
        """The stripped value, '' when blank or when the column is absent (optional)."""
        return (self.values.get(column) or "").strip()


@dataclass(frozen=True)
class BadLine:
    """A record that cannot be mapped to the header; `column` when the problem has one."""

    line: int
    message: str
    column: str = ""


@dataclass
class ExportTable:
    """A detected export: header info; `records()` streams its records from the file."""

    file: Path
    encoding: str
    separator: str
    columns: list[str]
    _header_lines: int  # physical lines up to the end of the header

    def records(self) -> Iterator[Record | BadLine]:
        """Records in file order; blank lines are skipped, bad lines reported."""
        with _open_text(self.file, self.encoding) as stream:
            lines = PhysicalLines(stream)
            lines.skip(self._header_lines)
            yield from _Splitter(lines, self.separator, self.columns, self.encoding).records()


def _open_text(path: Path, encoding: str) -> io.TextIOWrapper:
    try:
        binary = path.open("rb")
    except OSError as exc:
        raise MalformedFileError(path, f"cannot read: {exc.strerror}") from None
    # surrogateescape: an undecodable byte spoils its line only; `PhysicalLines` flags it.
    return io.TextIOWrapper(binary, encoding=encoding, errors="surrogateescape", newline="")


class _Splitter:
    """Turns physical lines into records, applying the line-level rules."""

    def __init__(
        self, lines: PhysicalLines, separator: str, columns: list[str], encoding: str
    ) -> None:
        self.lines = lines
        self.separator = separator
        self.columns = columns
        self.encoding = _ENCODING_NAMES.get(encoding, encoding)
        self.reader = csv.reader(lines, delimiter=separator)

    def records(self) -> Iterator[Record | BadLine]:
        lines, reader, columns = self.lines, self.reader, self.columns
        width = len(columns)
        taken = lines.taken
        while True:
            lines.start_record()
            try:
                fields = next(reader)
            except StopIteration:
                return
            except LineTooLong as exc:
                yield self._too_long(exc.line)
                continue
            except RecordTooLong:
                yield self._runaway(
                    f"is still open after {RECORD_LINES_MAX} lines or {LINE_CHARS_MAX} characters"
                )
                continue
            except csv.Error as exc:
                yield self._csv_error(exc)
                continue
            start = taken[0].number
            if lines.hit_end:
                yield self._runaway("is still open at the end of the file")
                continue
            if not fields or all(not f.strip() for f in fields):
                continue
            # A trailing separator is common in hand-made exports: drop empty extras.
            while len(fields) > width and not fields[-1].strip():
                fields = fields[:-1]
            if len(taken) == 1:
                flawed = taken[0] if taken[0].flaw else None
            else:
                problem = self._multiline_problem(fields, width)
                if problem:
                    yield self._runaway(problem)
                    continue
                flawed = next((line for line in taken if line.flaw), None)
            if flawed is not None:
                yield BadLine(start, self._flaw_message(flawed))
            elif len(fields) != width:
                yield BadLine(start, f"expected {width} fields, found {len(fields)}")
            else:
                yield Record(start, dict(zip(columns, fields, strict=True)))

    def _multiline_problem(self, fields: list[str], width: int) -> str | None:
        """Why a record spanning several lines is not a legitimate multi-line quoted field.

        It must have the header's number of fields and be well-formed CSV: each closing
        quote followed by a separator or the end of the line. A runaway quote usually
        closes on the opening quote of a later field, followed by that field's text.
        """
        spanned = len(self.lines.taken)
        if len(fields) != width:
            return f"runs over {spanned} lines and leaves {len(fields)} fields, not {width}"
        texts = [line.text or "" for line in self.lines.taken]
        try:
            next(csv.reader(texts, delimiter=self.separator, strict=True))
        except csv.Error:
            return f"runs over {spanned} lines and closes in the middle of a value"
        return None

    def _runaway(self, problem: str) -> BadLine:
        """The record's first line is bad; the lines after it are read again as records."""
        taken = self.lines.taken
        self.lines.replay(taken[1:])
        start = taken[0].number
        return BadLine(
            start,
            f"unclosed quote? a quoted field opened on line {start} {problem}; "
            "the lines after it are read on their own",
        )

    def _too_long(self, line: Line) -> BadLine:
        taken = self.lines.taken
        if len(taken) > 1:
            return self._runaway(
                f"is still open at line {line.number}, longer than {LINE_CHARS_MAX} characters"
            )
        column = self._column(_field_index(line.head, self.separator, LINE_CHARS_MAX))
        where = f"column {column}: " if column else ""
        return BadLine(
            line.number,
            f"{where}line longer than {LINE_CHARS_MAX} characters: skipped",
            column,
        )

    def _csv_error(self, exc: csv.Error) -> BadLine:
        taken = self.lines.taken
        start = taken[0].number
        if len(taken) > 1:
            self.lines.replay(taken[1:])
        limit = csv.field_size_limit()
        if "field limit" not in str(exc):
            # The csv module's messages are fixed texts: no file content in them.
            return BadLine(start, f"not readable as CSV ({exc})")
        text = "".join(line.text or "" for line in taken)
        column = self._column(_field_index(text, self.separator, limit))
        where = f"column {column}: field" if column else "a field"
        message = f"{where} of more than {limit} characters"
        if len(taken) > 1:
            message += (
                f" (a quoted field opened on line {start} runs over {len(taken)} lines: "
                "unclosed quote? the lines after it are read on their own)"
            )
        return BadLine(start, message, column)

    def _column(self, index: int | None) -> str:
        if index is None:
            return ""
        return self.columns[index] if index < len(self.columns) else f"field {index + 1}"

    def _flaw_message(self, line: Line) -> str:
        if line.flaw == "nul":
            return f"NUL byte on line {line.number}: binary content"
        return (
            f"bytes not valid in {self.encoding} on line {line.number} (the encoding chosen "
            f"for the file from its first {ENCODING_WINDOW // 2**20} MiB of non-ASCII text)"
        )


def _field_index(text: str, separator: str, limit: int) -> int | None:
    """Index of the first field of `text` (one record, split as the csv module does) longer
    than `limit` characters, or of the field still open where `text` stops; None if none.
    Only used to name the column of an oversized field, never to read values."""
    index, position, end = 0, 0, len(text)
    while position < end:
        first = position
        if text[position] == '"':
            position += 1
            while True:
                quote = text.find('"', position)
                if quote < 0:
                    return index  # open quote to the end
                if text.startswith('""', quote):
                    position = quote + 2
                    continue
                position = quote + 1
                break
        stops = [i for i in (text.find(c, position) for c in (separator, "\n", "\r")) if i >= 0]
        stop = min(stops, default=end)
        if stop - first > limit or stop == end:
            return index
        if text[stop] != separator:
            return None
        index += 1
        position = stop + 1
    return index


def open_export(
    path: Path,
    *,
    required: Mapping[str, str],
    aliases: Mapping[str, str] | None = None,
) -> ExportTable:
    """Detect `path`'s encoding and separator, check the header has every `required` column.

    `required` maps canonical names (see `normalise_header`) to the spelling of the
    contract, used in error messages; `aliases` maps other accepted canonical spellings
    to the canonical one. Only the first bytes and the header are read here.
    """
    try:
        with path.open("rb") as binary:
            encoding = detect_encoding(binary, path)
    except OSError as exc:
        raise MalformedFileError(path, f"cannot read: {exc.strerror}") from None
    with _open_text(path, encoding) as stream:
        lines = PhysicalLines(stream)
        header, separator = _read_header(lines, path)
        header_lines = lines.number
    aliases = aliases or {}
    columns: list[str] = []
    named = {normalise_header(name) for name in header}
    for name in header:
        canonical = normalise_header(name)
        # An alias stands for its column unless the file also has that column by its name.
        if aliases.get(canonical) not in named:
            canonical = aliases.get(canonical, canonical)
        columns.append(canonical)
    while columns and not columns[-1]:
        columns.pop()  # trailing separator in the header
    duplicates = sorted({c for c in columns if columns.count(c) > 1 and c})
    if duplicates:
        raise MalformedFileError(path, f"duplicate column(s) {', '.join(duplicates)}")
    missing = [shown for c, shown in required.items() if c not in columns]
    if missing:
        raise MissingColumnError(path, missing)
    return ExportTable(path, encoding, separator, columns, header_lines)


def _read_header(lines: PhysicalLines, path: Path) -> tuple[list[str], str]:
    """The header's fields and the separator; leading blank lines are skipped."""
    try:
        while True:
            lines.start_record()
            first = next(lines, None)
            if first is None:
                raise MalformedFileError(path, "empty file (no header line)")
            if first.strip():
                break
        separator = detect_separator(first, path)
        lines.replay(lines.taken)  # the csv reader reads the header line again
        lines.start_record()
        header = next(csv.reader(lines, delimiter=separator), None)
    except LineTooLong:
        raise MalformedFileError(path, f"header longer than {LINE_CHARS_MAX} characters") from None
    except (RecordTooLong, csv.Error):
        raise MalformedFileError(path, "header cannot be read as CSV (unclosed quote?)") from None
    if header is None or lines.hit_end:
        raise MalformedFileError(path, "header ends inside a quoted field (unclosed quote)")
    if any(line.flaw for line in lines.taken):
        raise UndecodableFileError(path, "header holds bytes the file's encoding cannot decode")
    return header, separator
