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
)


def register(app: typer.Typer) -> None:
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(f"ltvfeed.commands.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"ltvfeed.commands.{name}":
                continue  # not built yet
            raise
        module.register(app)
