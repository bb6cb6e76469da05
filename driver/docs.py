"""`driver docs`: dbt's documentation site (models, sources, seeds, columns, tests, exposures and
their lineage), generated against the database (the catalog reads column types and sizes).

`write_static` keeps one self-contained page (dbt's static_index.html: manifest and catalog built
in, opens from disk); `serve` runs `dbt docs serve` on the generated target directory.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from .db import Connection
from .dbt import Invocation, invoke


class DocsError(RuntimeError):
    """dbt docs generate failed."""


def target_dir() -> Path:
    """target/docs: a target path of its own, so the docs' run_results.json does not replace the
    one of the last refresh (read by driver report)."""
    from .html_report import target_dir as project_target  # noqa: PLC0415

    return project_target() / "docs"


def generate(connection: Connection, dbt_vars: dict | None = None) -> Invocation:
    """dbt docs generate --static (also writes index.html, manifest.json, catalog.json)."""
    inv = invoke(connection, ["docs", "generate"], dbt_vars, ["--static", "--quiet", "--target-path", str(target_dir())])
    if not inv.success:
        raise DocsError(f"dbt docs generate failed: {inv.error or 'see the dbt log'}")
    return inv


def write_static(connection: Connection, out_dir: Path, dbt_vars: dict | None = None) -> Path:
    """Generate the docs and copy the single-file site to out_dir/index.html (with the manifest and
    catalog beside it for other tools)."""
    generate(connection, dbt_vars)
    out_dir.mkdir(parents=True, exist_ok=True)
    target = target_dir()
    shutil.copyfile(target / "static_index.html", out_dir / "index.html")
    for name in ("manifest.json", "catalog.json"):
        shutil.copyfile(target / name, out_dir / name)
    return out_dir / "index.html"


def serve(connection: Connection, port: int, dbt_vars: dict | None = None) -> Invocation:
    """Generate, then serve target/ on localhost:port until interrupted (dbt docs serve)."""
    generate(connection, dbt_vars)
    return invoke(connection, ["docs", "serve"], dbt_vars,
                  ["--port", str(port), "--no-browser", "--target-path", str(target_dir())])
