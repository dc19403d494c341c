"""Write notebooks/NN_name.ipynb from its py:percent twin notebooks/NN_name.py (no outputs).

The .py twin is the source a developer edits and reviews; the .ipynb is what JupyterLab and papermill
open. `python scripts/sync_notebooks.py` rewrites every .ipynb; `--check` fails when one is out of date.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jupytext
import nbformat

ROOT = Path(__file__).resolve().parents[1]
KERNELSPEC = {"name": "python3", "display_name": "Python 3 (ipykernel)", "language": "python"}


def build(py: Path) -> str:
    nb = jupytext.read(py)
    nb.metadata = {"kernelspec": KERNELSPEC, "language_info": {"name": "python"}}
    for i, cell in enumerate(nb.cells):
        cell.id = f"{py.stem[:2]}-{i:03d}"
        if cell.cell_type == "code":
            cell.outputs = []
            cell.execution_count = None
        cell.metadata = {k: v for k, v in cell.metadata.items() if k == "tags"}
    nb.nbformat, nb.nbformat_minor = 4, 5
    return nbformat.writes(nb) + "\n"


def main(argv: list[str]) -> int:
    check = "--check" in argv
    stale = []
    for py in sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.py")):
        text = build(py)
        ipynb = py.with_suffix(".ipynb")
        if ipynb.exists() and ipynb.read_text() == text:
            continue
        if check:
            stale.append(ipynb.name)
        else:
            ipynb.write_text(text)
            print(f"wrote {ipynb.relative_to(ROOT)}")
    if stale:
        print("out of date (run python scripts/sync_notebooks.py):", ", ".join(stale))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
