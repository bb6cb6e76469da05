"""Daily log files `.logs/refresh-YYYY-MM-DD.log` (UTC date), kept 30 days (refresh.md §10, OP-R11)."""

from __future__ import annotations

import os
import re
import time
from datetime import datetime, timezone
from pathlib import Path

from .db import PROJECT_DIR, mask_secrets

# Terminal control sequences (colours, cursor moves): dbt colours its result lines.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)|[@-Z\\-_])")


def plain(text: str) -> str:
    """The text without terminal colour codes."""
    return _ANSI.sub("", text)

def log_dir() -> Path:
    """Where refresh logs go: .logs/ in the project, BARSMITH_LOG_DIR overrides."""
    return Path(os.environ.get("BARSMITH_LOG_DIR", PROJECT_DIR / ".logs"))


def log_path(day: datetime | None = None, directory: Path | None = None) -> Path:
    day = day or datetime.now(timezone.utc)
    return (directory or log_dir()) / f"refresh-{day:%Y-%m-%d}.log"


def prune(keep_days: int = 30, directory: Path | None = None, now: float | None = None) -> list[Path]:
    """Delete refresh-*.log files whose modification time is older than keep_days."""
    now = time.time() if now is None else now
    removed = []
    for path in sorted((directory or log_dir()).glob("refresh-*.log")):
        if now - path.stat().st_mtime > keep_days * 86400:
            path.unlink()
            removed.append(path)
    return removed


def latest(directory: Path | None = None) -> Path | None:
    files = sorted((directory or log_dir()).glob("refresh-*.log"))
    return files[-1] if files else None


class RefreshLog:
    """Append-only, secret-masked log of one refresh; every line is time-stamped (UTC)."""

    def __init__(self, path: Path | None = None):
        self.path = path or log_path()
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._fh = self.path.open("a", encoding="utf-8")

    def write(self, message: str, level: str = "INFO") -> None:
        stamp = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"
        for line in mask_secrets(plain(str(message))).splitlines() or [""]:
            self._fh.write(f"{stamp} [{level}] {line}\n")
        self._fh.flush()

    def close(self) -> None:
        self._fh.close()

    def __enter__(self) -> "RefreshLog":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
