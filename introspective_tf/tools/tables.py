"""The one Markdown table builder every generated table uses (cells as text; `records.mean_std` makes
the mean ± std cells)."""

from __future__ import annotations

from typing import Any, Iterable, Sequence


def row(cells: Sequence[Any]) -> str:
    """One table line: `| a | b |`, an empty cell as `| |`."""
    return "|" + "|".join(f" {cell} " if str(cell) else " " for cell in cells) + "|"


def table(header: Sequence[Any], rows: Iterable[Sequence[Any]]) -> str:
    """A header line, its rule and one line per row."""
    return "\n".join([row(header), "|" + "---|" * len(header), *map(row, rows)])
