"""The one Markdown table builder every generated table uses (cells as text; `records.mean_std` makes
the mean ± std cells)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def row(cells: Sequence[Any]) -> str:
    """One table line: `| a | b |`, an empty cell as `| |`."""
    return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"


def table(header: str | Sequence[Any], rows: Iterable[Sequence[Any]], fill: Any = "") -> str:
    """A header line, its rule and one line per row. `header` is a list of cells or the header line as
    it reads (`"run | seeds"`); a row shorter than the header (a line not run yet) ends in `fill` cells."""
    if isinstance(header, str):
        header = header.split(" | ")
    body = [[*cells, *[fill] * (len(header) - len(cells))] for cells in rows]
    return "\n".join([row(header), "|" + "---|" * len(header), *map(row, body)])
