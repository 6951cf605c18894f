"""The public face of the simulator: simulate a whole shop in memory (tests, the demo) or stream it to
Parquet chunk by chunk (the CLI at full size), and write it in the layout the ingest reads."""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from tqdm import tqdm

from ltvfeed.simulator.catalog import build_catalog
from ltvfeed.simulator.chunk import ChunkTables, IdCounters, chunk_population, simulate_chunk
from ltvfeed.simulator.config import SimulationConfig
from ltvfeed.simulator.population import Population, draw_partners
from ltvfeed.simulator.schema import (
    GROUND_TRUTH_KINDS,
    GROUND_TRUTH_SCHEMAS,
    RAW_KINDS,
    RAW_SCHEMAS,
    dictionary_columns,
)

GROUND_TRUTH_DIR = "ground_truth"
EVENTS_PER_FILE = 2_000_000


def chunk_bounds(config: SimulationConfig) -> Iterator[tuple[int, int, int]]:
    """(chunk index, first user (0-based), users in the chunk) of every chunk, in order."""
    for index, first in enumerate(range(0, config.n_users, config.chunk_users)):
        yield index, first, min(config.chunk_users, config.n_users - first)


def iter_chunks(config: SimulationConfig, progress: bool = False) -> tuple[pa.Table, Iterator[ChunkTables]]:
    """The items table and a generator of user chunks (users, their activity and ground truth)."""
    catalog = build_catalog(config)
    partners = draw_partners(config)

    def chunks() -> Iterator[ChunkTables]:
        counters = IdCounters()
        with tqdm(total=config.n_users, unit="user", desc="simulate", disable=not progress) as bar:
            for index, first, n in chunk_bounds(config):
                yield simulate_chunk(config, catalog, partners, index, first, n, counters)
                bar.update(n)

    return catalog.table, chunks()


def hidden_populations(config: SimulationConfig) -> Iterator[Population]:
    """Every chunk's users with their hidden traits, exactly as the simulation drew them (no activity is
    simulated): what the closed-loop response model reads (:mod:`ltvfeed.simulator.response`)."""
    partners = draw_partners(config)
    for index, first, n in chunk_bounds(config):
        yield chunk_population(config, partners, index, first, n)


def _to_pandas(table: pa.Table) -> pd.DataFrame:
    """Nullable integer columns stay integers (birth_year has nulls)."""
    mapping = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}
    return table.to_pandas(types_mapper=mapping.get)


@dataclass(frozen=True)
class ShopData:
    """Everything one simulation emits, as DataFrames with exactly the raw tables' columns."""

    config: SimulationConfig
    users: pd.DataFrame
    items: pd.DataFrame
    orders: pd.DataFrame
    order_items: pd.DataFrame
    events: pd.DataFrame
    preferences: pd.DataFrame
    future_spend: pd.DataFrame  # ground truth: spend in [end, end + H) per user and horizon
    user_traits: pd.DataFrame  # ground truth: the hidden traits

    def raw(self) -> dict[str, pd.DataFrame]:
        return {kind: getattr(self, kind) for kind in RAW_KINDS}

    def ground_truth(self) -> dict[str, pd.DataFrame]:
        return {kind: getattr(self, kind) for kind in GROUND_TRUTH_KINDS}


def simulate_shop(config: SimulationConfig, progress: bool = False) -> ShopData:
    """The whole shop in memory; fine up to a few ten thousand users (use ``simulate_to_directory`` beyond)."""
    items, chunks = iter_chunks(config, progress)
    parts: dict[str, list[pa.Table]] = {}
    for chunk in chunks:
        for kind, table in {**chunk.raw(), **chunk.ground_truth()}.items():
            parts.setdefault(kind, []).append(table)
    frames = {kind: _to_pandas(pa.concat_tables(tables)) for kind, tables in parts.items()}
    return ShopData(config=config, items=_to_pandas(items), **frames)


@dataclass
class ShopSummary:
    """What a streamed simulation wrote: rows and files per kind, and how many users spend in the future."""

    out_dir: Path
    rows: dict[str, int] = field(default_factory=dict)
    files: dict[str, list[Path]] = field(default_factory=dict)
    future_spenders: dict[int, int] = field(default_factory=dict)  # horizon -> users with spend > 0
    users_with_events: int = 0
    seconds: float = 0.0

    def share_with_future_spend(self, horizon: int) -> float:
        return self.future_spenders.get(horizon, 0) / max(self.rows.get("users", 0), 1)


class _ParquetSink:
    """Append tables of one kind to Parquet files, starting a new file every ``rows_per_file`` rows."""

    def __init__(self, kind: str, folder: Path, stem: str, schema: pa.Schema, rows_per_file: int | None) -> None:
        self.kind, self.folder, self.stem, self.schema, self.rows_per_file = kind, folder, stem, schema, rows_per_file
        self.files: list[Path] = []
        self.rows = 0
        self._writer: pq.ParquetWriter | None = None
        self._rows_in_file = 0

    def _open(self) -> pq.ParquetWriter:
        if self.rows_per_file is None:
            path = self.folder / f"{self.stem}.parquet"
        else:
            path = self.folder / f"{self.stem}-part{len(self.files) + 1:03d}.parquet"
        self.files.append(path)
        self._rows_in_file = 0
        dictionary = dictionary_columns(self.kind, self.schema)
        return pq.ParquetWriter(path, self.schema, compression="zstd", use_dictionary=dictionary)

    def write(self, table: pa.Table) -> None:
        table = table.cast(self.schema)
        offset = 0
        while offset < table.num_rows:
            full = self.rows_per_file is not None and self._rows_in_file >= self.rows_per_file
            if self._writer is None or full:
                self._rotate()
            room = table.num_rows - offset if self.rows_per_file is None else self.rows_per_file - self._rows_in_file
            part = table.slice(offset, room)
            self._writer.write_table(part)
            offset += part.num_rows
            self._rows_in_file += part.num_rows
            self.rows += part.num_rows

    def _rotate(self) -> None:
        if self._writer is not None:
            self._writer.close()
        self._writer = self._open()

    def close(self) -> None:
        if self._writer is None and not self.files:
            self._writer = self._open()  # no rows at all: still one file carrying the schema
        if self._writer is not None:
            self._writer.close()
            self._writer = None


class ShopWriter:
    """Writes ``OUT/<kind>/sim-seed{S}*.parquet`` and ``OUT/ground_truth/*.parquet``.

    A new simulation replaces the previous simulated shop in the folder: earlier ``sim-*.parquet`` files are
    removed first (files from other sources stay), so the ingest never sees two shops at once.
    """

    def __init__(self, out_dir: Path, seed: int, events_per_file: int = EVENTS_PER_FILE) -> None:
        self.out_dir = Path(out_dir)
        stem = f"sim-seed{seed}"
        self.sinks: dict[str, _ParquetSink] = {}
        for kind, schema in RAW_SCHEMAS.items():
            folder = self._fresh_folder(kind, "sim-*.parquet")
            self.sinks[kind] = _ParquetSink(kind, folder, stem, schema, events_per_file if kind == "events" else None)
        folder = self._fresh_folder(GROUND_TRUTH_DIR, "*.parquet")
        for kind, schema in GROUND_TRUTH_SCHEMAS.items():
            self.sinks[kind] = _ParquetSink(kind, folder, kind, schema, None)

    def _fresh_folder(self, name: str, stale: str) -> Path:
        folder = self.out_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in sorted(folder.glob(stale)):
            old.unlink()
        return folder

    def write(self, kind: str, table: pa.Table) -> None:
        self.sinks[kind].write(table)

    def close(self) -> dict[str, list[Path]]:
        for sink in self.sinks.values():
            sink.close()
        return {kind: sink.files for kind, sink in self.sinks.items()}


def write_shop(data: ShopData, out_dir: Path, events_per_file: int = EVENTS_PER_FILE) -> dict[str, list[Path]]:
    """Write an in-memory shop in the landing layout; returns the files per kind."""
    writer = ShopWriter(out_dir, data.config.seed, events_per_file)
    try:
        for kind, frame in {**data.raw(), **data.ground_truth()}.items():
            schema = RAW_SCHEMAS.get(kind) or GROUND_TRUTH_SCHEMAS[kind]
            writer.write(kind, pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    finally:
        files = writer.close()
    return files


def simulate_to_directory(
    config: SimulationConfig, out_dir: Path, progress: bool = True, events_per_file: int = EVENTS_PER_FILE
) -> ShopSummary:
    """Simulate and write chunk by chunk: memory stays bounded by ``config.chunk_users``."""
    started = time.perf_counter()
    summary = ShopSummary(out_dir=Path(out_dir))
    items, chunks = iter_chunks(config, progress)
    writer = ShopWriter(out_dir, config.seed, events_per_file)
    try:
        writer.write("items", items)
        for chunk in chunks:
            for kind, table in {**chunk.raw(), **chunk.ground_truth()}.items():
                writer.write(kind, table)
            future = chunk.future_spend
            for horizon in config.horizons:
                mask = pc.and_(pc.equal(future["horizon_days"], horizon), pc.greater(future["spend"], 0))
                summary.future_spenders[horizon] = (
                    summary.future_spenders.get(horizon, 0) + pc.sum(mask.cast(pa.int64())).as_py()
                )
            summary.users_with_events += pc.count_distinct(chunk.events["user_id"]).as_py()
    finally:
        summary.files = writer.close()
    summary.rows = {kind: sink.rows for kind, sink in writer.sinks.items()}
    summary.seconds = time.perf_counter() - started
    return summary
