"""Physical lines of a KAIROS / France Travail export, read in bounded memory.

`PhysicalLines` sits between the decoded text stream and the `csv` module: it hands the
csv reader one physical line at a time, never more than `LINE_CHARS_MAX` characters, so a
gigabyte line without a line break costs a megabyte, not a gigabyte. It also remembers
the lines handed out for the record being read (`taken`) and can put lines back
(`replay`): when `reading` rejects a record that spans several lines (a runaway quote),
the lines after its first one are read again as records of their own, so no line is lost.

Line breaks are `\\n`, `\\r\\n` and a lone `\\r` (old Mac spreadsheets), as the csv
module expects with `newline=''`. Bytes the chosen encoding cannot decode arrive as lone
surrogates (`errors="surrogateescape"`); such a line, or one holding a NUL, is flagged
here and judged in `reading` (docs/kairos-exports.md "Reading files").
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterable
from typing import Final, NamedTuple, TextIO

# Characters of one physical line (line break included) and of one record; eight times
# the csv module's default field limit, far beyond any real line.
LINE_CHARS_MAX: Final = 2**20
# Physical lines one record may span (a quoted field holding line breaks).
RECORD_LINES_MAX: Final = 100

_SKIP_CHUNK: Final = 2**20
_SURROGATE: Final = re.compile("[\udc80-\udcff]")


class Line(NamedTuple):
    """One physical line: its number (1 = first line of the file), its text with its line
    break, or None when it was longer than `LINE_CHARS_MAX` (`head` then holds its first
    characters), and `flaw`: 'undecodable', 'nul' or None."""

    number: int
    text: str | None
    flaw: str | None
    head: str = ""


class LineTooLong(Exception):
    """The next physical line is longer than LINE_CHARS_MAX; the rest of it was skipped."""

    def __init__(self, line: Line) -> None:
        super().__init__(f"line {line.number} is longer than {LINE_CHARS_MAX} characters")
        self.line = line


class RecordTooLong(Exception):
    """The record being read passed RECORD_LINES_MAX lines or LINE_CHARS_MAX characters."""


class PhysicalLines:
    """Iterator of physical lines for `csv.reader`, bounded, with the lines of the current
    record in `taken` (call `start_record` before each record) and a push-back queue."""

    def __init__(self, stream: TextIO) -> None:
        self._readline = stream.readline
        self.number = 0  # last line number read from the stream
        self.taken: list[Line] = []
        self.hit_end = False  # the end of the file was reached during the current record
        self._chars = 0
        self._pending: deque[Line] = deque()
        self._after_cr = False

    def __iter__(self) -> PhysicalLines:
        return self

    def __next__(self) -> str:
        line = self._pending.popleft() if self._pending else self._read()
        if line is None:
            self.hit_end = True
            raise StopIteration
        taken = self.taken
        taken.append(line)
        if line.text is None:
            raise LineTooLong(line)
        self._chars += len(line.text)
        if len(taken) > 1 and (len(taken) > RECORD_LINES_MAX or self._chars > LINE_CHARS_MAX):
            raise RecordTooLong
        return line.text

    def start_record(self) -> None:
        self.taken.clear()
        self._chars = 0
        self.hit_end = False

    def replay(self, lines: Iterable[Line]) -> None:
        """Read `lines` again, before anything else."""
        self._pending.extendleft(reversed(list(lines)))

    def skip(self, count: int) -> None:
        """Read and forget the first `count` lines (the header, already parsed)."""
        while self.number < count and self._read() is not None:
            pass

    def _read(self) -> Line | None:
        text = self._readline(LINE_CHARS_MAX)
        if self._after_cr:
            self._after_cr = False
            if text == "\n":  # the LF of a CRLF that the size limit cut after its CR
                text = self._readline(LINE_CHARS_MAX)
        if not text:
            return None
        self.number += 1
        last = text[-1]
        if len(text) == LINE_CHARS_MAX:
            if last == "\r":
                self._after_cr = True
            elif last != "\n":
                self._skip_rest()
                return Line(self.number, None, None, text)
        if "\x00" in text:
            return Line(self.number, text, "nul")
        # str.isascii() is O(1): the surrogate scan only runs on lines with non-ASCII text.
        if not text.isascii() and _SURROGATE.search(text):
            return Line(self.number, text, "undecodable")
        return Line(self.number, text, None)

    def _skip_rest(self) -> None:
        """Read on to the end of the current physical line, a chunk at a time."""
        while True:
            chunk = self._readline(_SKIP_CHUNK)
            if not chunk or chunk[-1] == "\n":
                return
            if chunk[-1] == "\r":
                self._after_cr = len(chunk) == _SKIP_CHUNK
                return
