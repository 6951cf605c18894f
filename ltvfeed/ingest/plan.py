"""How a file's header becomes the entity's columns: name normalisation, ``--map`` renames, the transaction-log
preset, and the whole-file rejection when a required column is missing (checked before anything is loaded)."""

from __future__ import annotations

from collections import Counter

from pydantic import BaseModel, ConfigDict

from ltvfeed.errors import UserError
from ltvfeed.ingest.spec import EntitySpec, spec_for

# Shops' plain transaction logs: customer_id, order_date, amount[, quantity].
TRANSACTION_LOG_MAP = {"customer_id": "user_id", "order_date": "ordered_at"}


class ImportPlan(BaseModel):
    """What to do with one file; ``columns`` are the file's columns, in file order, under their final names."""

    model_config = ConfigDict(frozen=True)

    kind: str
    spec: EntitySpec
    columns: tuple[str, ...]
    ignored_columns: tuple[str, ...]
    derive_order_id: bool = False


def normalise_name(name: str) -> str:
    """Headers match case-insensitively and ignore surrounding spaces (``" Order_ID "`` is ``order_id``)."""
    return name.strip().lower()


def parse_column_map(pairs: list[str] | None) -> dict[str, str]:
    """``["customer_id=user_id", ...]`` (the CLI's ``--map`` values) as a dict."""
    mapping: dict[str, str] = {}
    for pair in pairs or ():
        src, sep, dst = pair.partition("=")
        if not sep or not src.strip() or not dst.strip():
            raise UserError(f"--map {pair!r}: expected SRC=DST, e.g. --map customer_id=user_id")
        mapping[src.strip()] = dst.strip()
    return mapping


def plan_import(
    kind: str,
    header: list[str],
    column_map: dict[str, str] | None = None,
    transaction_log: bool = False,
    source: str = "file",
) -> ImportPlan:
    """Resolve the header against the kind's spec; raises UserError naming what is wrong."""
    spec = spec_for(kind)
    if transaction_log and kind != "orders":
        raise UserError(f"--transaction-log imports orders only, not {kind}")
    names = [normalise_name(h) or f"unnamed_{i + 1}" for i, h in enumerate(header)]
    repeated = sorted(n for n, count in Counter(names).items() if count > 1)
    if repeated:
        raise UserError(f"{source}: column(s) {', '.join(repeated)} appear more than once in the header")

    renames = _renames(spec, names, column_map or {}, transaction_log, source)
    columns = [renames.get(n, n) for n in names]
    clashing = sorted(n for n, count in Counter(columns).items() if count > 1)
    if clashing:
        raise UserError(f"{source}: after renaming, more than one column is called {', '.join(clashing)}")

    missing = [c for c in spec.required_names if c not in columns]
    derive_order_id = transaction_log and "order_id" in missing
    if derive_order_id:
        missing.remove("order_id")
        spec = spec.without_required("order_id")
    if missing:
        raise UserError(_missing_message(kind, source, missing, header))
    ignored = tuple(c for c in columns if c not in spec.names)
    return ImportPlan(
        kind=kind, spec=spec, columns=tuple(columns), ignored_columns=ignored, derive_order_id=derive_order_id
    )


def _renames(
    spec: EntitySpec, names: list[str], column_map: dict[str, str], transaction_log: bool, source: str
) -> dict[str, str]:
    renames = {src: dst for src, dst in TRANSACTION_LOG_MAP.items() if transaction_log and src in names}
    for src, dst in column_map.items():
        src_n, dst_n = normalise_name(src), normalise_name(dst)
        if src_n not in names:
            raise UserError(f"--map {src}={dst}: {source} has no column {src!r}; it has: {', '.join(names)}")
        if dst_n not in spec.names:
            raise UserError(f"--map {src}={dst}: {dst!r} is not a column of {spec.kind} ({', '.join(spec.names)})")
        renames[src_n] = dst_n
    return renames


def _missing_message(kind: str, source: str, missing: list[str], header: list[str]) -> str:
    has = ", ".join(h.strip() for h in header) if header else "no columns"
    hint = "rename columns with --map SRC=DST"
    looks_like_log = "order_id" in missing or any(normalise_name(h) in TRANSACTION_LOG_MAP for h in header)
    if kind == "orders" and looks_like_log:
        hint += "; a plain transaction log (customer_id, order_date, amount) imports with --transaction-log"
    return f"{source}: missing required column(s) {', '.join(missing)} for {kind}; the file has: {has} ({hint})"
