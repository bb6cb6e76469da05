"""`csv` and `parquet`: a directory (or one file) of files in the source format.

CSV files are read with the loader's own parser (driver/load.py: header of source columns,
ISO-8601 instants, empty = NULL, errors name file, line and column); Parquet files (pyarrow)
must have source-named columns and go through the same typing rules. A key (id, "timestamp")
present twice in the directory refuses the whole directory, as `driver load` refuses it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .. import load as loadmod
from .base import Asset, Piece, Provider, ProviderError, typed_row, SOURCE_COLUMNS


class FileDirectory(Provider):
    http = False
    default_rate = None
    default_chunk_days = 100_000  # local reads: one piece per gap

    def __init__(self, kind: str, path: Path | None):
        if kind not in ("csv", "parquet"):
            raise ValueError(kind)
        self.name = kind
        self.path = path
        self._by_id: dict[int, list[dict[str, Any]]] | None = None
        self._error: str | None = None

    def files(self) -> list[Path]:
        if self.path is None:
            raise ProviderError("usage", f"--provider {self.name} needs --path DIR")
        if self.path.is_file():
            return [self.path]
        if not self.path.is_dir():
            raise ProviderError("usage", f"{self.path}: no such file or directory")
        return sorted(self.path.glob(f"*.{self.name}"))

    def _read_csv(self, path: Path) -> list[tuple[str, dict[str, Any]]]:
        header, rows, _lines = loadmod.parse_file(path)
        return [(f"{path}: line {n}", dict(zip(header, row))) for n, row in enumerate(rows, start=2)]

    def _read_parquet(self, path: Path) -> list[tuple[str, dict[str, Any]]]:
        import pyarrow.parquet as pq  # noqa: PLC0415 (only for this provider)

        try:
            table = pq.read_table(path)
        except Exception as exc:  # pyarrow raises several types for unreadable files
            raise loadmod.LoadError(f"{path}: cannot read as parquet: {exc}") from None
        unknown = [c for c in table.column_names if c not in loadmod.COLUMNS]
        if unknown:
            raise loadmod.LoadError(f"{path}: unknown column {unknown[0]!r} (known: {', '.join(loadmod.COLUMNS)})")
        for req in (*loadmod.REQUIRED, "name"):
            if req not in table.column_names:
                raise loadmod.LoadError(f"{path}: missing required column {req!r}")
        return [(f"{path}: row {n}", rec) for n, rec in enumerate(table.to_pylist(), start=1)]

    def load(self) -> dict[int, list[dict[str, Any]]]:
        """Every file read and typed once; LoadError refuses the directory."""
        if self._by_id is not None:
            return self._by_id
        by_id: dict[int, list[dict[str, Any]]] = {}
        seen: dict[tuple, str] = {}
        for path in self.files():
            records = self._read_csv(path) if self.name == "csv" else self._read_parquet(path)
            for origin, rec in records:
                row = typed_row(rec, origin)
                key = (row[0], row[SOURCE_COLUMNS.index("timestamp")])
                if key in seen:
                    raise loadmod.LoadError(f"{origin}: duplicate row for id {key[0]} at {key[1].isoformat()} "
                                            f"(first at {seen[key]})")
                seen[key] = origin
                by_id.setdefault(row[0], []).append(dict(zip(SOURCE_COLUMNS, row)))
        self._by_id = by_id
        return by_id

    async def fetch(self, piece: Piece, session: Any) -> list[dict[str, Any]]:
        if self._error is None:
            try:
                self.load()
            except loadmod.LoadError as exc:
                self._error = str(exc)
            except ProviderError as exc:
                self._error = str(exc)
        if self._error is not None:
            raise ProviderError("invalid file", self._error, fatal=True)
        return list(self._by_id.get(piece.asset.id, []))

    def check_asset(self, asset: Asset) -> str | None:
        return None
