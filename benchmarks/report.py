"""How the benchmarks print their figures: markdown tables on stdout, and the command that made
them."""

import os
import sys


def command_line():
    """This run's command as a reader would type it: the interpreter relative to the working
    folder when it lies inside it (``.venv/bin/python``), not the checkout's absolute path."""
    python = os.path.relpath(sys.executable)
    if python.startswith(".."):
        python = sys.executable
    return f"{python} {' '.join(sys.argv)}"


def table(headers, rows):
    """Print a markdown table; columns whose cells are all numbers are right-aligned."""
    rows = [[str(cell) for cell in row] for row in rows]
    align = [
        "---:" if all(_numeric(row[c]) for row in rows) else ":---" for c in range(len(headers))
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join(align) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    print("\n".join(lines) + "\n", flush=True)


def _numeric(cell):
    if not cell:
        return True
    try:
        float(cell.replace(",", "").rstrip("×%").replace("—", "nan"))
    except ValueError:
        return False
    return True
