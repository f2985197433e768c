"""The one Markdown table writer of the package, for the report, the experiments table and
the benchmarks' quoted output, and how the report writes a value or a change in a cell."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

MISSING = "—"


def markdown_table(header: Sequence[object], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub Markdown table: the first column left-aligned, the others right-aligned,
    columns padded to a common width so the source reads as a table too; `|` in a cell is
    escaped."""
    cells = [[str(cell).replace("|", "\\|") for cell in row] for row in [header, *rows]]
    widths = [max(3, *(len(row[i]) for row in cells)) for i in range(len(cells[0]))]

    def line(row: Sequence[str]) -> str:
        padded = [
            cell.ljust(width) if i == 0 else cell.rjust(width)
            for i, (cell, width) in enumerate(zip(row, widths, strict=True))
        ]
        return "| " + " | ".join(padded) + " |"

    rule = ["-" * widths[0], *("-" * (width - 1) + ":" for width in widths[1:])]
    return "\n".join([line(cells[0]), line(rule), *(line(row) for row in cells[1:])])


def format_value(value: object) -> str:
    """A metric or parameter as a table cell: floats to 4 decimals, lists joined, None as —."""
    if value is None:
        return MISSING
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}"
    if isinstance(value, list):
        return ", ".join(format_value(item) for item in value)
    return str(value)


def format_change(old: object, new: object) -> str:
    """new - old with its sign, or — where either side is missing or not a number."""
    numbers = all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new))
    if not numbers:
        return MISSING
    change = new - old
    if change == 0:
        return "0"
    if isinstance(change, int):
        return f"{change:+d}"
    return f"{change:+.4f}"
