"""Reading CSV and Parquet files as bounded chunks of text columns, so one validation path serves both formats
and memory stays flat however large the file is."""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
import pyarrow.parquet as pq
from tqdm import tqdm

from ltvfeed.errors import UserError

CHUNK_ROWS = 200_000
FORMATS: dict[str, Literal["csv", "parquet"]] = {".csv": "csv", ".parquet": "parquet"}
_DELIMITERS = (",", ";", "\t", "|")
_HEADER_LIMIT = 1 << 20  # longest header line read; a longer one is rejected (the widest kind has 13 columns)


@dataclass(frozen=True)
class MalformedRow:
    """A CSV row with the wrong number of fields: it cannot be lined up with the header, so it is not validated."""

    row: int
    category: str
    reason: str
    data: dict[str, Any]


@dataclass
class Chunk:
    """Consecutive data rows: ``frame`` holds the well-formed ones (text values or None, plus ``_row``, the 1-based
    data row number); ``malformed`` the CSV rows with the wrong number of fields."""

    frame: pd.DataFrame
    malformed: list[MalformedRow] = field(default_factory=list)

    @property
    def rows(self) -> int:
        return len(self.frame) + len(self.malformed)

    def malformed_rejected(self) -> pd.DataFrame:
        """The malformed rows in the shape of ``ValidatedChunk.rejected``."""
        return pd.DataFrame(
            {
                "_row": [m.row for m in self.malformed],
                "reason": [m.reason for m in self.malformed],
                "row_data": [json.dumps(m.data, ensure_ascii=False) for m in self.malformed],
            }
        )


def file_format(path: Path) -> Literal["csv", "parquet"]:
    if not path.is_file():
        raise UserError(f"no such file: {path}")
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise UserError(f"{path.name}: unsupported file type {path.suffix!r}; use .csv or .parquet")
    return fmt


def content_sha256(path: Path) -> str:
    """The file's identity for idempotent re-imports. CSV files are also checked to be UTF-8 on the way through,
    so a Latin-1 export is rejected with a clear message before anything is loaded."""
    digest = hashlib.sha256()
    decoder = codecs.getincrementaldecoder("utf-8")() if file_format(path) == "csv" else None
    offset = 0
    with path.open("rb") as f:
        while True:
            block = f.read(1 << 20)
            digest.update(block)
            try:
                if decoder is not None:
                    decoder.decode(block, final=not block)
            except UnicodeDecodeError as exc:
                raise UserError(
                    f"{path.name}: not UTF-8 text (bad byte at offset {offset + exc.start}); re-export it as UTF-8"
                ) from exc
            if not block:
                return digest.hexdigest()
            offset += len(block)


def read_header(path: Path) -> list[str]:
    """Column names as written in the file (CSV: first line, delimiter sniffed; Parquet: schema)."""
    if file_format(path) == "parquet":
        try:
            return list(pq.read_schema(path).names)
        except (pa.ArrowException, OSError) as exc:
            raise UserError(f"{path.name}: not a readable Parquet file ({exc})") from exc
    line = _first_line(path)
    try:
        return next(csv.reader([line], delimiter=_sniff_delimiter(line)))
    except csv.Error as exc:  # e.g. one name over the csv module's 128 KiB field limit
        raise UserError(f"{path.name}: cannot read the header line as CSV ({exc})") from exc


def iter_chunks(
    path: Path, columns: tuple[str, ...], chunk_rows: int = CHUNK_ROWS, keep: Collection[str] | None = None
) -> Iterator[Chunk]:
    """The file's data rows, ``chunk_rows`` at a time, columns renamed to ``columns`` (same order as the file).
    Only the columns named in ``keep`` (default: all) are converted: a file with thousands of columns the kind
    does not read costs their parsing, not their memory."""
    indices = [i for i, name in enumerate(columns) if keep is None or name in keep]
    if file_format(path) == "parquet":
        yield from _parquet_chunks(path, columns, indices, chunk_rows)
    else:
        yield from _csv_chunks(path, columns, indices, chunk_rows)


def _first_line(path: Path) -> str:
    with path.open("rb") as f:
        raw = f.readline(_HEADER_LIMIT + 1)
    if len(raw) > _HEADER_LIMIT:
        raise UserError(
            f"{path.name}: the header line is longer than {_HEADER_LIMIT >> 20} MiB ({_HEADER_LIMIT:,} bytes "
            "without a line end); export only the columns needed (at most a few dozen are ever read)"
        )
    try:
        line = raw.decode("utf-8-sig").rstrip("\r\n")
    except UnicodeDecodeError as exc:
        raise UserError(f"{path.name}: not UTF-8 text ({exc.reason}); re-export the file as UTF-8") from exc
    if not line.strip():
        raise UserError(f"{path.name}: the first line is empty; a CSV file needs a header row")
    return line


def _sniff_delimiter(header_line: str) -> str:
    """Shops export with commas, semicolons (European Excel), tabs or pipes; the header says which."""
    counts = {d: header_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


def _parquet_chunks(path: Path, columns: tuple[str, ...], indices: list[int], chunk_rows: int) -> Iterator[Chunk]:
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path.name}: not a readable Parquet file ({exc})") from exc
    first_row = 1
    with tqdm(total=parquet.metadata.num_rows, unit="rows", desc=path.name, disable=None, delay=1) as bar:
        names = [parquet.schema_arrow.names[i] for i in indices]
        for batch in _parquet_batches(path, parquet, chunk_rows, names):
            frame = pd.DataFrame(
                {columns[i]: _as_text(path, columns[i], batch.column(j)) for j, i in enumerate(indices)}
            )
            frame["_row"] = np.arange(first_row, first_row + batch.num_rows, dtype=np.int64)
            first_row += batch.num_rows
            bar.update(batch.num_rows)
            yield Chunk(frame)


def _parquet_batches(
    path: Path, parquet: pq.ParquetFile, chunk_rows: int, names: list[str]
) -> Iterator[pa.RecordBatch]:
    try:
        yield from parquet.iter_batches(batch_size=chunk_rows, columns=names)
    except (pa.ArrowException, OSError) as exc:
        raise UserError(f"{path.name}: cannot read Parquet data ({exc})") from exc


def _text_series(values: pa.Array | pa.ChunkedArray) -> pd.Series:
    """Arrow strings stay Arrow-backed in pandas, so validation runs Arrow's C++ string kernels."""
    return pd.Series(pd.arrays.ArrowStringArray(pa.chunked_array([values]) if isinstance(values, pa.Array) else values))


def _as_text(path: Path, name: str, values: pa.Array) -> pd.Series:
    """Any Parquet column as text (None for null): one validation path for both formats. Nested values
    (struct/list/map, e.g. event properties) become JSON documents."""
    if pa.types.is_nested(values.type):
        documents = [None if v is None else json.dumps(v, default=str) for v in values.to_pylist()]
        return _text_series(pa.array(documents, pa.string()))
    if pa.types.is_floating(values.type):  # NaN is pandas' missing value: null, never the text 'nan'
        values = pc.if_else(pc.is_nan(values), pa.scalar(None, values.type), values)
    if pa.types.is_timestamp(values.type) and values.type.tz is not None:
        values = values.cast(pa.timestamp(values.type.unit, tz="UTC"))
    try:
        text = values.cast(pa.string())
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise UserError(f"{path.name}: column {name} of type {values.type} cannot be read as text ({exc})") from exc
    return _text_series(text)


def _csv_chunks(path: Path, columns: tuple[str, ...], indices: list[int], chunk_rows: int) -> Iterator[Chunk]:
    delimiter = _sniff_delimiter(_first_line(path))
    malformed = _MalformedRows(columns, delimiter)
    generated = [f"c{i}" for i in range(len(columns))]
    included = [generated[i] for i in indices]
    kept = tuple(columns[i] for i in indices)
    with (
        path.open("rb") as f,
        tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc=path.name, disable=None, delay=1) as bar,
    ):
        try:
            reader = pa_csv.open_csv(
                f,
                read_options=pa_csv.ReadOptions(
                    use_threads=False,  # keeps malformed rows' numbers known and in order
                    block_size=8 << 20,
                    skip_rows=1,
                    column_names=generated,
                    encoding="utf-8",
                ),
                parse_options=pa_csv.ParseOptions(
                    delimiter=delimiter, newlines_in_values=True, invalid_row_handler=malformed
                ),
                convert_options=pa_csv.ConvertOptions(
                    column_types=dict.fromkeys(included, pa.string()),
                    include_columns=included,
                    null_values=[""],  # "NA" is Namibia, "None" may be a brand: only empty means missing
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
            pending = pa.table({name: pa.array([], pa.string()) for name in included})
            for batch in _batches(reader):
                pending = pa.concat_tables([pending, pa.Table.from_batches([batch])])
                while pending.num_rows >= chunk_rows:
                    yield malformed.chunk(pending.slice(0, chunk_rows), kept)
                    pending = pending.slice(chunk_rows)
                bar.update(f.tell() - bar.n)
            yield malformed.chunk(pending, kept, final=True)
            bar.update(f.tell() - bar.n)
        except pa.ArrowInvalid as exc:
            raise UserError(f"{path.name}: cannot parse as CSV ({exc})") from exc


def _batches(reader: pa_csv.CSVStreamingReader) -> Iterator[pa.RecordBatch]:
    while True:
        try:
            yield reader.read_next_batch()
        except StopIteration:
            return


class _MalformedRows:
    """pyarrow's invalid-row handler: remembers rows with the wrong number of fields (skipping them) and gives the
    well-formed rows their true 1-based data row numbers."""

    def __init__(self, columns: tuple[str, ...], delimiter: str) -> None:
        self.columns = columns
        self.delimiter = delimiter
        self.rows: list[int] = []  # data row numbers of all malformed rows so far (ascending)
        self.pending: list[MalformedRow] = []
        self.good_rows = 0

    def __call__(self, row: pa_csv.InvalidRow) -> str:
        if row.number is None:
            return "error"  # cannot say which row it was: fail loudly rather than misnumber
        number = row.number - 1  # pyarrow counts the header as row 1
        try:
            fields = next(csv.reader([row.text], delimiter=self.delimiter), [])
        except csv.Error:  # a field over the csv module's limit: keep the line as it was read
            fields = []
        data: dict[str, Any] = dict(zip(self.columns, fields, strict=False)) if fields else {"_line": row.text}
        if len(fields) > len(self.columns):
            data["_extra_fields"] = fields[len(self.columns) :]
        category = "row: too few fields" if row.actual_columns < row.expected_columns else "row: too many fields"
        reason = f"{category} ({row.actual_columns}, expected {row.expected_columns})"
        self.rows.append(number)
        self.pending.append(MalformedRow(number, category, reason, data))
        return "skip"

    def chunk(self, table: pa.Table, columns: tuple[str, ...], final: bool = False) -> Chunk:
        n = table.num_rows
        frame = pd.DataFrame({name: _text_series(table.column(i)) for i, name in enumerate(columns)})
        frame["_row"] = self._row_numbers(n)
        self.good_rows += n
        last_good = int(frame["_row"].iloc[-1]) if n else 0
        # malformed rows reported so far belong before this chunk's last good row, or anywhere if this is the end
        taken = [m for m in self.pending if final or m.row < last_good]
        self.pending = [m for m in self.pending if not (final or m.row < last_good)]
        return Chunk(frame, taken)

    def _row_numbers(self, n: int) -> np.ndarray:
        """The i-th well-formed row is data row i + 1 + (malformed rows before it)."""
        good_index = np.arange(self.good_rows, self.good_rows + n, dtype=np.int64)
        malformed = np.asarray(self.rows, dtype=np.int64)
        good_before_malformed = malformed - np.arange(1, len(malformed) + 1)
        return good_index + 1 + np.searchsorted(good_before_malformed, good_index, side="right")
