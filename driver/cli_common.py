"""What every command module needs before it touches the database: the environment's identifiers
and URL checked (exit 2 with the variable named), the connection resolved (exit 1 with a masked
message). Shared by cli.py, ingest_cli.py (fetch, gaps, audit) and viz_commands.py (plot, report,
docs), so no command reads BARSMITH_SOURCE_* or BARSMITH_SCHEMA unvalidated."""

from __future__ import annotations

import os
from contextlib import contextmanager

import typer
from rich.console import Console

from . import config
from . import db as dbmod
from . import filters as filtersmod

# Exit codes (README "Exit codes"): 0 success, 1 failure, 2 usage or configuration error,
# 3 refused: another refresh holds the lock.
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2

err = Console(stderr=True, soft_wrap=True)


@contextmanager
def usage_errors():
    """A refused value from the environment or the command line: its message, exit 2."""
    try:
        yield
    except (config.ConfigError, filtersmod.FilterError) as exc:
        err.print(f"error: {dbmod.mask_secrets(str(exc))}", markup=False, highlight=False)
        raise typer.Exit(EXIT_USAGE) from None


def source_table(user_vars: dict | None = None) -> tuple[str, str]:
    """The source relation: --vars source_schema/source_table, else BARSMITH_SOURCE_*; validated."""
    with usage_errors():
        schema, table = config.source_relation()
    user_vars = user_vars or {}
    return user_vars.get("source_schema", schema), user_vars.get("source_table", table)


def check_environment() -> None:
    """Every identifier and the URL from the environment, before anything else runs."""
    with usage_errors():
        config.target_schema()
        config.source_relation()
        url = os.environ.get("BARSMITH_DB_URL", "").strip()
        if url:
            config.parse_db_url(url)


def connection() -> dbmod.Connection:
    check_environment()
    try:
        with usage_errors():
            return dbmod.resolve(start=True)
    except dbmod.DatabaseError as exc:
        err.print(f"error: {dbmod.mask_secrets(str(exc))}", markup=False, highlight=False)
        raise typer.Exit(EXIT_FAILED) from None
