"""File ingestion into raw.*: CSV/Parquet -> validated, typed rows -> COPY -> one transaction per file.

Import-light on purpose (the DAG imports this at parse time): pandas/pyarrow load when a file is imported."""

from ltvfeed.ingest.api import import_directory, import_file
from ltvfeed.ingest.report import ImportReport

__all__ = ["ImportReport", "import_directory", "import_file"]
