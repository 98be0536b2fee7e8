"""``fastnas-bench report``: Markdown, JSON and PNG files from saved runs."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

from fastnas_bench.report.markdown import to_markdown
from fastnas_bench.report.plots import plots
from fastnas_bench.report.summary import read_run, rows_of, speedups_of, summarize


def write_report(runs: list[Path], out: Path) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots of every run into ``out``; return their paths.

    With several runs the plots of each carry its index (``2-pareto.png``).
    """
    out.mkdir(parents=True, exist_ok=True)
    reports, documents, pngs = [], [], []
    for i, path in enumerate(runs, start=1):
        doc = read_run(path)  # run files hold every round's samples: read each once
        rows, speedups = rows_of(doc, path), speedups_of(doc)
        summary = summarize(rows, speedups)
        pngs_of_run = plots(summary, rows, out, prefix=f"{i}-" if len(runs) > 1 else "")
        pngs += pngs_of_run
        reports.append((summary, speedups, [p.name for p in pngs_of_run]))
        # The saved run's own speedup entries, as stored (older runs lack fields a record would fill in).
        documents.append({"summary": summary, "speedups": doc.get("fastnas_bench", {}).get("speedups", {}),
                          "rows": [asdict(r) for r in rows]})
    md = out / "report.md"
    md.write_text(to_markdown(reports, [p.name for p in runs]))
    js = out / "report.json"
    # ``summary`` is the newest run's, for readers of single-run reports.
    js.write_text(json.dumps({"summary": documents[-1]["summary"], "runs": documents}, indent=2))
    return [md, js, *pngs]
