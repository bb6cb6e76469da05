"""Stand-in for dbt's `run_started_at` when sqlfluff renders models with the jinja templater."""


def isoformat() -> str:
    return "2026-01-01T00:00:00+00:00"
