"""Tables from lists of dicts: plain text for the terminal, markdown for reports.

Counts get thousands separators, FLOPs are shown in millions, booleans as yes/no.
"""

from __future__ import annotations

from typing import Any, Sequence


def format_cell(key: str, value: Any, float_format: str = "g") -> str:
    """One cell's text; `float_format` is the format spec for floats ('g', '.4f', ...)."""
    if value is None:
        return ""
    if key == "flops" and isinstance(value, (int, float)) and not isinstance(value, bool):
        return f"{value / 1e6:,.1f}M"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return format(value, float_format)
    return str(value)


def _columns(rows: Sequence[dict[str, Any]]) -> list[str]:
    columns: list[str] = []
    for row in rows:
        columns += [key for key in row if key not in columns]
    return columns


def format_table(rows: Sequence[dict[str, Any]]) -> str:
    """Right-aligned columns (the union of the rows' keys, in first-seen order)."""
    columns = _columns(rows)
    cells = [[format_cell(col, row.get(col)) for col in columns] for row in rows]
    widths = [max(len(col), *(len(line[i]) for line in cells)) for i, col in enumerate(columns)]
    lines = ["  ".join(col.rjust(w) for col, w in zip(columns, widths))]
    lines += ["  ".join(cell.rjust(w) for cell, w in zip(line, widths)) for line in cells]
    return "\n".join(lines)


def print_table(rows: Sequence[dict[str, Any]]) -> None:
    print(format_table(rows))


def markdown_table(rows: Sequence[dict[str, Any]], float_format: str = ".4f") -> str:
    """A GitHub-markdown table; '(none)' for no rows."""
    if not rows:
        return "(none)\n"
    columns = _columns(rows)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(format_cell(c, row.get(c), float_format).replace("|", "\\|") for c in columns)
              + " |" for row in rows]
    return "\n".join(lines) + "\n"
