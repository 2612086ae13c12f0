"""Export List: the rows of a result pane as a CSV file (UTF-8 with BOM, so spreadsheet programs read it)."""

from __future__ import annotations

import csv
from pathlib import Path


def write_csv(path: str, headers: list[str], rows: list[list[str]]) -> None:
    with Path(path).open("w", encoding="utf-8-sig", newline="") as file:
        writer = csv.writer(file)
        writer.writerow(headers)
        writer.writerows(rows)
