"""Audit trail of `driver fetch`: one JSON file per run under .barsmith/audit/ (issue 21).

fetch-<UTC timestamp>.json holds the parameters, per asset and per piece the rows fetched,
inserted and updated, the requests and retries with their causes, the failures, the gaps before
and after and a summary. API keys are never recorded: the text is scrubbed before it is written.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from rich.table import Table

from .db import state_dir


def audit_dir() -> Path:
    return state_dir() / "audit"


def write(record: dict[str, Any], scrub: Callable[[str], str] = lambda s: s) -> Path:
    """Write the record as .barsmith/audit/fetch-<UTC timestamp>.json (atomically); its path."""
    folder = audit_dir()
    folder.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    path = folder / f"{record.get('kind', 'fetch')}-{stamp}.json"
    n = 1
    while path.exists():
        n += 1
        path = folder / f"{record.get('kind', 'fetch')}-{stamp}-{n}.json"
    text = scrub(json.dumps(record, indent=2, default=str)) + "\n"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return path


def runs(limit: int = 10) -> list[tuple[Path, dict[str, Any]]]:
    """The newest audit files first (unreadable ones are listed with an empty record)."""
    folder = audit_dir()
    if not folder.is_dir():
        return []
    paths = sorted(folder.glob("fetch-*.json"), key=lambda p: p.name, reverse=True)[:limit]
    out = []
    for path in paths:
        try:
            out.append((path, json.loads(path.read_text(encoding="utf-8"))))
        except (OSError, ValueError):
            out.append((path, {}))
    return out


def table(items: list[tuple[Path, dict[str, Any]]]) -> Table:
    t = Table(title="recent fetch runs", caption=str(audit_dir()), title_justify="left")
    t.add_column("run (UTC)", no_wrap=True, min_width=16)
    for name in ("providers", "pieces ok/fail", "rows ins/upd", "requests (retries)", "missing before→after",
                 "seconds", "exit"):
        t.add_column(name, justify="left" if name == "provider" else "right", overflow="fold")
    for path, rec in items:
        s = rec.get("summary", {})
        after = s.get("sessions_missing_after")
        ok = (s.get("pieces", 0) or 0) - (s.get("failed", 0) or 0)
        wall = rec.get("timing", {}).get("wall_s")
        t.add_row(path.stem.removeprefix("fetch-"), ",".join(s.get("providers", [])) or "-",
                  f"{ok}/{s.get('failed', '?')}", f"{s.get('inserted', '?')}/{s.get('updated', '?')}",
                  f"{s.get('requests', '?')} ({s.get('retries', '?')})",
                  f"{s.get('sessions_missing_before', '?')}→{'?' if after is None else after}",
                  "?" if wall is None else f"{wall:.1f}", str(s.get("exit_code", "?")),
                  style="red" if s.get("exit_code") else None)
    return t
