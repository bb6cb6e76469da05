"""Everything the driver takes from outside, checked before anything touches the database or dbt.

* identifiers (BARSMITH_SCHEMA, BARSMITH_SOURCE_SCHEMA, BARSMITH_SOURCE_TABLE, the identifier-valued
  dbt vars): plain lower-case PostgreSQL identifiers that need no quoting; the driver still composes
  them with psycopg.sql.Identifier, and the macros may write them unquoted;
* BARSMITH_DB_URL: a URL or key=value string that libpq parses unambiguously; a refusal never
  repeats any part of it (it may hold a password);
* `--vars`: YAML or JSON like dbt's, only vars the project declares, typed values.

Every refusal is a ConfigError whose message names the variable; the CLI exits 2 with it.
"""

from __future__ import annotations

import os
import re
from datetime import date
from functools import lru_cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from psycopg import conninfo



class ConfigError(ValueError):
    """A value from the environment or the command line was refused (exit 2)."""


# ------------------------------------------------------------------ identifiers

_IDENT = re.compile(r"[a-z_][a-z0-9_]*")
MAX_IDENT_BYTES = 63
# Keywords that cannot be written as a bare identifier everywhere the project writes one
# (PostgreSQL categories R, T and C of pg_get_keywords(), versions 15-17).
_KEYWORDS = frozenset("""
    all analyse analyze and any array as asc asymmetric both case cast check collate column constraint
    create current_catalog current_date current_role current_time current_timestamp current_user default
    deferrable desc distinct do else end except false fetch for foreign from grant group having in
    initially intersect into lateral leading limit localtime localtimestamp not null offset on only or
    order placing primary references returning select session_user some symmetric system_user table then
    to trailing true union unique user using variadic when where window with
    authorization binary collation concurrently cross current_schema freeze full ilike inner is isnull
    join left like natural notnull outer overlaps right similar tablesample verbose
    between bigint bit boolean char character coalesce dec decimal exists extract float greatest grouping
    inout int integer interval json json_array json_arrayagg json_exists json_object json_objectagg
    json_query json_scalar json_serialize json_table json_value least merge_action national nchar none
    normalize nullif numeric out overlay position precision real row setof smallint substring time
    timestamp treat trim values varchar xmlattributes xmlconcat xmlelement xmlexists xmlforest
    xmlnamespaces xmlparse xmlpi xmlroot xmlserialize xmltable
""".split())
IDENT_RULE = ("a plain lower-case PostgreSQL identifier: a-z, 0-9 and _, starting with a letter or _, "
              f"at most {MAX_IDENT_BYTES} characters, not a reserved word")


def check_identifier(value: object, what: str, schema: bool = False) -> str:
    """The value if it is a plain lower-case identifier, else ConfigError naming `what`."""
    if not isinstance(value, str):
        raise ConfigError(f"{what}: expected an identifier, got {type(value).__name__} {value!r}")
    problem = None
    if not _IDENT.fullmatch(value):
        problem = "is not " + IDENT_RULE
        if value and _IDENT.fullmatch(value.lower()):
            problem += f" (did you mean {value.lower()!r}?)"
    elif len(value.encode()) > MAX_IDENT_BYTES:
        problem = f"is longer than {MAX_IDENT_BYTES} characters"
    elif value in _KEYWORDS:
        problem = "is a reserved SQL word; choose another name"
    elif schema and value.startswith("pg_"):
        problem = "starts with pg_, which PostgreSQL reserves for system schemas"
    if problem:
        shown = value if len(value) <= 80 else value[:77] + "..."
        raise ConfigError(f"{what}: {shown!r} {problem}")
    return value


def env_identifier(name: str, default: str, schema: bool = False, env: dict[str, str] | None = None) -> str:
    env = os.environ if env is None else env
    value = env.get(name)
    return check_identifier(default if value is None else value, name, schema=schema)


def target_schema(env: dict[str, str] | None = None) -> str:
    """BARSMITH_SCHEMA (default public): where the models and the driver's tables live."""
    return env_identifier("BARSMITH_SCHEMA", "public", schema=True, env=env)


def source_relation(env: dict[str, str] | None = None) -> tuple[str, str]:
    """(BARSMITH_SOURCE_SCHEMA, BARSMITH_SOURCE_TABLE), default public.price_histories."""
    return (env_identifier("BARSMITH_SOURCE_SCHEMA", "public", schema=True, env=env),
            env_identifier("BARSMITH_SOURCE_TABLE", "price_histories", env=env))


# ------------------------------------------------------------------ BARSMITH_DB_URL

_URL_SCHEMES = ("postgresql://", "postgres://")
DB_URL_HELP = ("write it as postgresql://USER@HOST:PORT/DBNAME, with a password after USER and a colon and "
               "its special characters percent-encoded (@ as %40, : as %3A, / as %2F, % as %25), or as "
               "key=value pairs (host, port, user, password, dbname; single-quote a value with spaces)")


def parse_db_url(url: str) -> dict[str, str]:
    """libpq's reading of BARSMITH_DB_URL, refused when unparsable or ambiguous.

    The message never contains the URL or libpq's own message (both may quote the password)."""
    try:
        parts = conninfo.conninfo_to_dict(url)
    except Exception:  # psycopg.ProgrammingError; libpq's text may quote the password
        raise ConfigError(f"BARSMITH_DB_URL cannot be parsed (its value is not shown: it may hold a "
                          f"password); {DB_URL_HELP}") from None
    if url.lstrip().lower().startswith(_URL_SCHEMES):
        before_query = url.split("?", 1)[0]
        if before_query.count("@") > 1:
            raise ConfigError("BARSMITH_DB_URL has more than one '@' (an unencoded '@' in the password?); "
                              f"its value is not shown; {DB_URL_HELP}")
    port = str(parts.get("port") or "5432")
    if not (port.isdigit() and 0 < int(port) < 65536):
        raise ConfigError("BARSMITH_DB_URL has an invalid port, or several (one server only; its value is not "
                          f"shown); {DB_URL_HELP}")
    return {k: str(v) for k, v in parts.items() if v is not None}


# ------------------------------------------------------------------ dbt vars (--vars)

# Vars the driver sets itself from its own options: --vars may not set them.
DRIVER_VARS = {
    "asset_ids": "--ids",
    "timeframes": "--tfs",
    "ema_periods": "--periods",
    "tf_period_combos": "--tf-period-combos",
    "rebuild_ids": "--full-refresh --ids",
    "staleness_hours": "--staleness-hours",
    "skip_stale_check": "--skip-stale-check",
}
IDENTIFIER_VARS = {"source_schema": True, "source_table": False}  # name -> is a schema
_MEMORY = re.compile(r"[1-9][0-9]*\s*(kB|MB|GB|TB)?")


@lru_cache(maxsize=4)
def declared_vars(project_file: Path | None = None) -> dict[str, Any]:
    """The vars dbt_project.yml declares, with their defaults."""
    from .db import PROJECT_DIR  # noqa: PLC0415 (db imports this module)

    with (project_file or PROJECT_DIR / "dbt_project.yml").open(encoding="utf-8") as fh:
        project = yaml.safe_load(fh) or {}
    return dict(project.get("vars") or {})


def _check_var(name: str, value: Any) -> Any:
    where = f"--vars {name}"
    if name in IDENTIFIER_VARS:
        return check_identifier(value, where, schema=IDENTIFIER_VARS[name])
    if name == "bars_daily_source":
        if value not in ("bars_1d", "raw"):
            raise ConfigError(f"{where}: {value!r} is not bars_1d or raw")
    elif name == "test_scope":
        if value not in ("auto", "all", "latest"):
            raise ConfigError(f"{where}: {value!r} is not auto, all or latest")
    elif name == "bars_tz":
        try:
            if not isinstance(value, str) or not value:
                raise ValueError
            ZoneInfo(value)
        except (ValueError, ZoneInfoNotFoundError):
            raise ConfigError(f"{where}: {value!r} is not an IANA time zone (e.g. America/New_York)") from None
    elif name == "ema_start_date":
        if isinstance(value, date):
            return value.isoformat()
        if value is None:
            value = ""
        if value != "":
            try:
                if not isinstance(value, str) or len(value) != 10:
                    raise ValueError
                date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"{where}: {value!r} is not YYYY-MM-DD or '' (no clipping)") from None
    elif name in ("lookback_days", "ema_min_obs_multiplier"):
        low = 0 if name == "lookback_days" else 1
        if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= 100_000:
            raise ConfigError(f"{where}: {value!r} is not an integer >= {low}")
    elif name == "barsmith_engine":
        if value not in ("postgres", "citus"):
            raise ConfigError(f"{where}: {value!r} is not postgres or citus")
    elif name in ("build_work_mem", "build_maintenance_work_mem"):
        if not isinstance(value, str) or not _MEMORY.fullmatch(value):
            raise ConfigError(f"{where}: {value!r} is not a memory size such as 128MB")
    return value


def check_vars(value: dict[Any, Any], declared: dict[str, Any] | None = None) -> dict[str, Any]:
    """Only vars dbt_project.yml declares, none the driver sets itself, each value checked."""
    declared = declared_vars() if declared is None else declared
    user_settable = sorted(k for k in declared if k not in DRIVER_VARS)
    out: dict[str, Any] = {}
    for name, item in value.items():
        if not isinstance(name, str):
            raise ConfigError(f"--vars: {name!r} is not a var name")
        if name in DRIVER_VARS:
            raise ConfigError(f"--vars: {name} is set by the driver; use {DRIVER_VARS[name]} instead")
        if name not in declared:
            raise ConfigError(f"--vars: unknown var {name!r}; dbt_project.yml declares: {', '.join(user_settable)}")
        out[name] = _check_var(name, item)
    return out


class _VarsLoader(yaml.SafeLoader):
    """YAML as dbt reads --vars, except that a date stays the text it was (checked by _check_var)."""


_VarsLoader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:timestamp"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def parse_vars(text: str | None, declared: dict[str, Any] | None = None) -> dict[str, Any]:
    """`--vars` (a YAML or JSON mapping, like dbt's) checked against the project's declared vars."""
    if text is None or not text.strip():
        return {}
    try:
        value = yaml.load(text, Loader=_VarsLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" (column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"--vars is not valid YAML/JSON{where}: give a mapping such as "
                          "'{ema_start_date: \"\", bars_daily_source: raw}'") from None
    if not isinstance(value, dict):
        raise ConfigError("--vars must be a mapping such as '{ema_start_date: \"\", bars_daily_source: raw}'")
    return check_vars(value, declared)
