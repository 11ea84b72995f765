"""Reading KAIROS / France Travail CSV exports: encoding, separator, header, records.

French exports come as UTF-8 (with or without BOM) or Windows-1252, separated by `|`
(the documented KAIROS and training-plan formats) or `;` (what a spreadsheet re-save
produces; DOMAIN.md "Public export formats around KAIROS"). Both are detected here, once,
so the loaders only see dictionaries keyed by canonical column names.

Whole-file problems (undecodable bytes, no separator, a missing required column) raise an
`ExportFileError` subclass naming the file and the column: the caller refuses the file
whole. Line-level problems (wrong number of fields) are returned with the line number so
they can be quarantined while the rest of the file loads.
"""

from __future__ import annotations

import codecs
import csv
import io
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


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


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str  # "utf-8-sig", "utf-8" or "cp1252"


def decode_export(raw: bytes, file: Path | str) -> DecodedText:
    """Decode with UTF-8 (BOM or not), else Windows-1252; refuse anything else.

    Windows-1252 decodes almost any byte string, so we first refuse what is clearly
    not a text export (NUL bytes, UTF-16 BOMs); the five bytes cp1252 leaves undefined
    then make a truly undecodable file fail.
    """
    if raw.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise UndecodableFileError(file, "UTF-16 is not supported: export as UTF-8 or Windows-1252")
    if b"\x00" in raw:
        raise UndecodableFileError(file, "binary content (NUL bytes): not a CSV export")
    if raw.startswith(codecs.BOM_UTF8):
        try:
            return DecodedText(raw[len(codecs.BOM_UTF8) :].decode("utf-8"), "utf-8-sig")
        except UnicodeDecodeError as exc:
            raise UndecodableFileError(
                file, f"UTF-8 BOM but invalid UTF-8 at byte {exc.start + 3}"
            ) from None
    try:
        return DecodedText(raw.decode("utf-8"), "utf-8")
    except UnicodeDecodeError:
        pass
    try:
        return DecodedText(raw.decode("cp1252"), "cp1252")
    except UnicodeDecodeError as exc:
        raise UndecodableFileError(
            file, f"neither UTF-8 nor Windows-1252 (undefined byte at offset {exc.start})"
        ) from None


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
    """A record that cannot be mapped to the header (wrong number of fields)."""

    line: int
    message: str


@dataclass
class ExportTable:
    """A decoded, split export: header info plus an iterator over its records."""

    file: Path
    encoding: str
    separator: str
    columns: list[str]
    _text: str

    def records(self) -> Iterator[Record | BadLine]:
        """Records in file order; blank lines are skipped, ragged lines reported."""
        reader = csv.reader(io.StringIO(self._text, newline=""), delimiter=self.separator)
        next(reader)  # header, already parsed
        previous_end = reader.line_num
        width = len(self.columns)
        for fields in reader:
            start = previous_end + 1
            previous_end = reader.line_num
            if not fields or all(not f.strip() for f in fields):
                continue
            # A trailing separator is common in hand-made exports: drop empty extras.
            while len(fields) > width and not fields[-1].strip():
                fields = fields[:-1]
            if len(fields) != width:
                yield BadLine(start, f"expected {width} fields, found {len(fields)}")
                continue
            yield Record(start, dict(zip(self.columns, fields, strict=True)))


def open_export(
    path: Path,
    *,
    required: Mapping[str, str],
    aliases: Mapping[str, str] | None = None,
) -> ExportTable:
    """Decode `path`, detect the separator, check the header has every `required` column.

    `required` maps canonical names (see `normalise_header`) to the spelling of the
    contract, used in error messages; `aliases` maps other accepted canonical spellings
    to the canonical one.
    """
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise MalformedFileError(path, f"cannot read: {exc.strerror}") from None
    decoded = decode_export(raw, path)
    text = decoded.text
    first_line = next((line for line in text.splitlines() if line.strip()), "")
    if not first_line:
        raise MalformedFileError(path, "empty file (no header line)")
    separator = detect_separator(first_line, path)
    # Skip leading blank lines so the csv reader's first row is the header.
    text = text[text.index(first_line) :]
    header = next(csv.reader(io.StringIO(text, newline=""), delimiter=separator))
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
    return ExportTable(path, decoded.encoding, separator, columns, text)
