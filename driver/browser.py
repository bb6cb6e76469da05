"""The system Chromium (Debian's `chromium`), for `driver plot --png` and the browser tests.

barsmith never downloads a browser: it uses BARSMITH_CHROMIUM when set, else the first of
chromium / chromium-browser / google-chrome on PATH. Headless on a machine without network,
Chromium needs a few flags or it keeps retrying background connections (FLAGS).
"""

from __future__ import annotations

import os
import shlex
import shutil
import stat
import tempfile
from pathlib import Path

FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


class BrowserNotFound(RuntimeError):
    """No Chromium on this machine."""


def chromium_path() -> str:
    configured = os.environ.get("BARSMITH_CHROMIUM", "").strip()
    if configured:
        if not Path(configured).is_file():
            raise BrowserNotFound(f"BARSMITH_CHROMIUM={configured} is not a file")
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    raise BrowserNotFound("no Chromium found: install Debian's chromium (apt-get install chromium) "
                          "or set BARSMITH_CHROMIUM to a Chrome/Chromium executable")


def launcher(directory: Path) -> Path:
    """A two-line script that starts the system Chromium with the extra flags of FLAGS that a
    caller cannot pass itself (kaleido's browser launcher takes a path, not flags)."""
    script = directory / "chromium"
    extra = " ".join(f for f in FLAGS if f not in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run"))
    script.write_text(f'#!/bin/sh\nexec {shlex.quote(chromium_path())} {extra} "$@"\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return script


def temp_dir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="barsmith-chromium-")
