"""The one Markdown table builder every generated table uses, and its mean ± std cell."""

from __future__ import annotations

from typing import Any, Callable, Iterable, Sequence

from introspective_tf.training import records


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


def mean_std_cell(
    rows: Iterable[dict], value: str | Callable[[dict], float | None], scale: float = 1.0, digits: int = 2
) -> str:
    """`records.mean_std` of `value` (a row's key, or a function of the row) over the rows (seeds) that
    recorded it, or "-" when none did (ECE, say, in runs made before it was measured)."""
    get = (lambda row: row.get(value)) if isinstance(value, str) else value
    values = [v for v in map(get, rows) if v is not None]
    return records.mean_std(values, scale, digits) if values else "-"
