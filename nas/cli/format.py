"""Plain-text tables for the terminal (counts with thousands separators, FLOPs in millions)."""

from __future__ import annotations

from typing import Any, Sequence


def _cell(key: str, value: Any) -> str:
    if value is None:
        return ""
    if key == "flops" and isinstance(value, int):
        return f"{value / 1e6:,.1f}M"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Right-aligned columns from a list of dicts (the union of their keys, in first-seen order)."""
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    cells = [[_cell(col, row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print(format_table(rows))
