"""Headless notebook runs (papermill) and the HTML report (`reports/index.html`)."""

from __future__ import annotations

import datetime as _dt
import html
import json
import time
from dataclasses import dataclass, field
from pathlib import Path

from .runtime.kernels import REPO_ROOT

NOTEBOOK_DIR = REPO_ROOT / "notebooks"


@dataclass
class NotebookRun:
    name: str
    ok: bool
    seconds: float
    output: Path
    html: Path | None = None
    error: str | None = None
    failed_cell: int | None = None
    parameters: dict = field(default_factory=dict)


def list_notebooks() -> list[Path]:
    return sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))


def select_notebooks(names: list[str] | None) -> list[Path]:
    """Notebooks by full stem ('00_overview'), number ('00') or technique word ('overview'); all if empty."""
    nbs = list_notebooks()
    if not names or names == ["all"]:
        return nbs
    chosen = []
    for n in names:
        hits = [p for p in nbs if p.stem == n or p.stem.split("_", 1)[0] == n or n in p.stem]
        if not hits:
            raise SystemExit(f"workbench run: no notebook matches {n!r}; known: {[p.stem for p in nbs]}")
        chosen.extend(h for h in hits if h not in chosen)
    return chosen


def _failed_cell(nb_path: Path) -> tuple[int | None, str | None]:
    """Index and error line of the first cell whose output is an error, in an executed notebook."""
    try:
        nb = json.loads(nb_path.read_text())
    except (OSError, ValueError):
        return None, None
    code_idx = 0
    for cell in nb.get("cells", []):
        if cell.get("cell_type") != "code":
            continue
        code_idx += 1
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error":
                return code_idx, f"{out.get('ename')}: {out.get('evalue')}"
    return None, None


def execute_notebook(src: Path, out_dir: Path, parameters: dict, timeout: int = 900) -> NotebookRun:
    """Run one notebook through papermill into out_dir, then export it to HTML."""
    import papermill as pm

    out_dir.mkdir(parents=True, exist_ok=True)
    out_nb = out_dir / src.name
    t0 = time.perf_counter()
    err = None
    try:
        pm.execute_notebook(str(src), str(out_nb), parameters=parameters, kernel_name="python3",
                            cwd=str(NOTEBOOK_DIR), execution_timeout=timeout, progress_bar=False,
                            log_output=False)
        ok = True
    except Exception as e:  # papermill raises PapermillExecutionError with the cell's traceback
        ok, err = False, f"{type(e).__name__}: {str(e).strip().splitlines()[-1] if str(e).strip() else ''}"
    run = NotebookRun(src.stem, ok, time.perf_counter() - t0, out_nb, parameters=parameters, error=err)
    if not ok:
        run.failed_cell, cell_err = _failed_cell(out_nb)
        run.error = cell_err or err
    if out_nb.exists():
        try:
            run.html = export_html(out_nb)
        except Exception as e:  # a missing nbconvert template must not hide the notebook's own result
            run.ok = False
            run.error = f"HTML export failed: {type(e).__name__}: {str(e).splitlines()[0]}"
    return run


def export_html(nb_path: Path) -> Path:
    """nbconvert to HTML; plotly figures carry inlined plotly.js (see workbench.viz.setup), so pages work offline."""
    import nbformat
    from nbconvert import HTMLExporter

    nb = nbformat.read(str(nb_path), as_version=4)
    body, _ = HTMLExporter().from_notebook_node(nb)
    out = nb_path.with_suffix(".html")
    out.write_text(body)
    return out


def write_index(runs: list[NotebookRun], out_dir: Path) -> Path:
    """reports/index.html: one row per executed notebook, plus the recorded speedup of each technique."""
    from .bench.records import all_records, is_stale
    from .techniques import REGISTRY

    rows = []
    for r in runs:
        link = f'<a href="{html.escape(r.html.name)}">{html.escape(r.name)}</a>' if r.html else html.escape(r.name)
        status = "ok" if r.ok else f"FAILED (cell {r.failed_cell}): {html.escape(r.error or '')}"
        params = ", ".join(f"{k}={v}" for k, v in r.parameters.items())
        rows.append(f"<tr><td>{link}</td><td class={'ok' if r.ok else 'bad'}>{status}</td>"
                    f"<td>{r.seconds:.1f} s</td><td>{html.escape(params)}</td></tr>")
    recs = all_records()
    pages = {r.name: r.html.name for r in runs if r.html}
    trows = []
    for name, b in REGISTRY.items():
        rec = recs.get(name)
        nb = (f'<a href="{html.escape(pages[b.notebook])}">{html.escape(b.notebook)}</a>' if b.notebook in pages
              else html.escape(str(b.notebook)))
        if rec is None or not rec.get("cases"):
            trows.append(f"<tr><td>{name}</td><td>{html.escape(b.title)}</td><td>{nb}</td>"
                         "<td colspan=3>not yet recorded</td></tr>")
            continue
        sp = [c["variants"][c["baseline"]]["median_us"] / c["variants"][c["optimized"]]["median_us"]
              for c in rec["cases"]]
        stale = " (stale)" if is_stale(rec) else ""
        trows.append(f"<tr><td>{name}</td><td>{html.escape(b.title)}</td><td>{nb}</td><td>{min(sp):.2f}x - {max(sp):.2f}x</td>"
                     f"<td>{html.escape(rec['device']['name'])}</td><td>{rec['recorded_utc']}{stale}</td></tr>")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    page = f"""<!doctype html><html><head><meta charset="utf-8"><title>workbench report</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}} td,th{{padding:4px 10px;border-bottom:1px solid #ddd;
text-align:left}} .ok{{color:#080}} .bad{{color:#b00}}</style></head><body>
<h1>Wide-EP workbench report</h1><p>Generated {when}. Each notebook was executed headlessly (papermill);
figures are self-contained (plotly.js inlined), so these pages open offline.</p>
<h2>Notebooks</h2><table><tr><th>notebook</th><th>status</th><th>time</th><th>parameters</th></tr>
{''.join(rows)}</table>
<h2>Recorded GPU results (baseline / optimized, per case)</h2>
<table><tr><th>record</th><th>technique</th><th>notebook</th><th>speedup range</th><th>card</th><th>recorded</th></tr>
{''.join(trows)}</table></body></html>"""
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "index.html"
    path.write_text(page)
    return path
