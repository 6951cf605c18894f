"""Sub-commands of ``ltvfeed``, one module each, wired into the Typer app here."""

from __future__ import annotations

import importlib

import typer

# module name -> attribute; a Typer sub-app is mounted under its own name, a function as a command.
_COMMAND_MODULES = (
    "stack",
    "simulate",
    "ingest",
    "dbt",
    "quality",
    "pipeline",
    "models",
    "serve",
    "features",
    "ltv",
    "feeds",
    "propensity",
    "collect",
    "experiments",
)


def register(app: typer.Typer) -> None:
    for name in _COMMAND_MODULES:
        importlib.import_module(f"ltvfeed.commands.{name}").register(app)
