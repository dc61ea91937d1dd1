"""Reading the CSV file: its encoding and delimiter sniffed from the head, then record by record."""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from typing import Any, BinaryIO

SAMPLE_BYTES = 64 * 1024


class PrefixedReader(io.RawIOBase):
    """The sniffed head of the file followed by the rest of the stream, without seeking."""

    def __init__(self, head: bytes, rest: BinaryIO) -> None:
        self._head = memoryview(head)
        self._rest = rest

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if self._head:
            n = min(len(buffer), len(self._head))
            buffer[:n] = self._head[:n]
            self._head = self._head[n:]
            return n
        data = self._rest.read(len(buffer))
        buffer[: len(data)] = data
        return len(data)


def _mark_undecodable(exc: UnicodeError) -> tuple[str, int]:
    """Like surrogateescape (bytes >= 0x80 keep their value), but for any byte and codec."""
    assert isinstance(exc, UnicodeDecodeError)
    bad = exc.object[exc.start : exc.end]
    return "".join(chr(0xDC00 + b) if b >= 0x80 else "\udc80" for b in bad), exc.end


codecs.register_error("crm-import-undecodable", _mark_undecodable)


def detect_encoding(head: bytes) -> tuple[str, bool]:
    """The encoding of the file and whether its head was plain ASCII (so cp1251 may follow)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8-sig", False
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        return "utf-16", False
    try:
        codecs.getincrementaldecoder("utf-8")().decode(head, final=False)
    except UnicodeDecodeError:
        return "cp1251", False
    return "utf-8", head.isascii()


def detect_delimiter(sample: str) -> str:
    """``,``, ``;`` or tab: csv.Sniffer first, else the most frequent one in the first lines."""
    sample = sample[: 16 * 1024]
    if "\n" in sample:
        sample = sample[: sample.rindex("\n")]
    try:
        delimiter = csv.Sniffer().sniff(sample, delimiters=",;\t").delimiter
        if delimiter in sample:
            return delimiter
    except csv.Error:
        pass
    lines = [line for line in sample.splitlines()[:10] if line.strip()]
    counts = {d: sum(line.count(d) for line in lines) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def read_records(text: io.TextIOBase, delimiter: str) -> Iterator[list[str] | csv.Error]:
    """Every record of the file; a record the csv module cannot parse comes as its error."""
    reader = csv.reader(text, delimiter=delimiter, quotechar='"', doublequote=True, strict=False)
    while True:
        try:
            yield next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield exc


def count_rows(source: BinaryIO) -> int:
    """The data rows of a CSV (records after the first non-blank one), for a progress total.

    Reads from the current position to the end, then seeks back there. Blank records count,
    as the import's progress counts them.
    """
    start = source.tell()
    try:
        head = source.read(SAMPLE_BYTES)
        if not head:
            return 0
        encoding, _ascii = detect_encoding(head)
        delimiter = detect_delimiter(head.decode(encoding, errors="replace"))
        text = io.TextIOWrapper(
            io.BufferedReader(PrefixedReader(head, source)),
            encoding=encoding,
            errors="replace",
            newline="",
        )
        records, header_seen = 0, False
        for record in read_records(text, delimiter):
            if header_seen:
                records += 1
            elif not isinstance(record, csv.Error) and any(c.strip() for c in record):
                header_seen = True
        text.detach()
        return records
    finally:
        source.seek(start)
