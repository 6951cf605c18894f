"""CSV files written for people: spreadsheet formulas are neutralised (OWASP CSV injection), data is not
otherwise changed, and every place that writes a CSV file goes through ltvfeed.csv_output."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pandas as pd
import pytest

from ltvfeed import csv_output
from ltvfeed.training.ltv_predict import OUTPUT_COLUMNS
from ltvfeed.training.ltv_predict import write_csv as write_predictions

HOSTILE = ["=cmd|' /C calc'!A0", "+SUM(1+1)*cmd|' /C calc'!A0", "-2+3+cmd|' /C calc'!A0", "@SUM(1+1)", "\t=1+1", "\r=1"]


def read_cells(path: Path) -> list[list[str]]:
    with path.open(newline="") as f:
        return list(csv.reader(f))


@pytest.mark.parametrize("value", HOSTILE)
def test_each_formula_prefix_gets_a_single_quote(value):
    assert csv_output.neutralise(value) == "'" + value


@pytest.mark.parametrize("value", ["u0001", "", "a=b", "'=already text", "12.5", "日本", None, -3.5, 7])
def test_other_values_are_unchanged(value):
    assert csv_output.neutralise(value) == value


def test_written_file_reads_back_neutralised_and_numbers_stay_numbers(tmp_path):
    frame = pd.DataFrame(
        {"customer_id": [*HOSTILE, "u1", 'say "hi", ok'], "amount": [-1.5] * len(HOSTILE) + [2.0, 3.0]},
        index=pd.Index(["=x", *["m"] * (len(HOSTILE) + 1)], name="@model"),
    )
    path = csv_output.write_csv(frame, tmp_path / "out.csv", index_label="=label")
    rows = read_cells(path)
    assert rows[0] == ["'=label", "customer_id", "amount"]
    assert [r[1] for r in rows[1:]] == [*("'" + v for v in HOSTILE), "u1", 'say "hi", ok']
    assert [r[2] for r in rows[1:]] == ["-1.5"] * len(HOSTILE) + ["2.0", "3.0"]
    assert rows[1][0] == "'=x"
    assert frame["customer_id"].iloc[0] == HOSTILE[0]  # the caller's frame is not modified


def test_ltv_predict_out_neutralises_customer_ids(tmp_path):
    frame = pd.DataFrame({"customer_id": ["=HYPERLINK(\"http://x\")", "c2"], "predicted_ltv": [1.0, -0.0],
                          "prob_return": [0.5, 0.25]})  # fmt: skip
    rows = read_cells(write_predictions(frame, tmp_path / "preds.csv"))
    assert rows[0] == list(OUTPUT_COLUMNS)
    assert rows[1] == ['\'=HYPERLINK("http://x")', "1.000000", "0.500000"]
    assert rows[2][0] == "c2"


# CSV only machines read: COPY streams into PostgreSQL, and files a bench writes for `ltvfeed import`. Neutralising
# those would change the data; everything else is for people and goes through ltvfeed.csv_output.
MACHINE_CSV_WRITERS = {
    "ltvfeed/ingest/load.py",
    "ltvfeed/simulator/load.py",
    "ltvfeed/features/point_in_time.py",
    "ltvfeed/warehouse/predictions.py",
    "bench/bench_feeds_real.py",
    "bench/bench_ltv_predict.py",
}


def test_every_csv_file_we_write_goes_through_the_helper():
    root = Path(__file__).resolve().parents[2]
    writers = set()
    for folder in ("ltvfeed", "training", "serving", "infra", "dags", "bench"):
        for path in (root / folder).rglob("*.py"):
            text = path.read_text(encoding="utf-8")
            if re.search(r"\.to_csv\(|csv\.writer\(|csv\.DictWriter\(|pa_csv\.write_csv\(", text):
                writers.add(path.relative_to(root).as_posix())
    unexpected = writers - MACHINE_CSV_WRITERS - {"ltvfeed/csv_output.py"}
    assert not unexpected, (
        f"{sorted(unexpected)} write CSV: files for people go through ltvfeed.csv_output.write_csv; "
        "CSV that only machines read (COPY, files for ltvfeed import) is listed in MACHINE_CSV_WRITERS"
    )
