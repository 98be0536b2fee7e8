"""``fastnas-bench report``: Markdown, JSON and PNG files from saved runs, and a GitHub job summary."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from fastnas_bench.errors import BadInputError
from fastnas_bench.fsutil import atomic_write_text
from fastnas_bench.report.fleet import (
    fleet_markdown,
    fleet_plot,
    fleet_rows,
    machine_class_of,
    machine_classes,
    row_of_json,
    saved_at,
)
from fastnas_bench.report.markdown import headline_markdown, to_markdown
from fastnas_bench.report.plots import plots
from fastnas_bench.report.summary import read_run, rows_of, speedups_of, summarize

#: The variable GitHub Actions sets to the file a step appends its job summary (Markdown) to.
STEP_SUMMARY_ENV = "GITHUB_STEP_SUMMARY"


def write_report(runs: list[Path], out: Path, *, job_summary: Path | None = None) -> list[Path]:
    """:func:`write_report_docs` for saved run files; errors name the file."""
    return write_report_docs([(str(path), read_run(path)) for path in runs], out, job_summary=job_summary)


def write_report_docs(docs: list[tuple[str, dict[str, Any]]], out: Path, *,
                      job_summary: Path | None = None, no_runs: str | None = None) -> list[Path]:
    """Write ``report.md``, ``report.json`` and the PNG plots of every run into ``out``; return their paths.

    With several runs the plots of each carry its index (``2-pareto.png``). Where the runs span two
    or more machine classes, the report starts with the fleet table (the newest run of each class),
    ``report.json`` holds its rows under ``"fleet"`` and ``fleet-speedup.png`` plots them.

    Args:
        docs: ``(name, saved run)`` pairs, oldest first: the parsed pytest-benchmark JSON and the file or
            object it came from (its stem names the run; errors name it).
        out: Output directory (created).
        job_summary: A file to append the fleet table to, or with one machine class the newest run's
            headline table (GitHub Actions' ``$GITHUB_STEP_SUMMARY``); ``None``: none.
        no_runs: A line naming the machine classes with no saved run yet
            (:func:`~fastnas_bench.report.fleet.no_runs_line`), said after the fleet table, in the job summary
            too, and kept in ``report.json`` as ``"no_runs"``.

    Raises:
        BadInputError: naming a run that is no suite run, or, across machine classes, one without a
            machine class or save time.
    """
    for name, doc in docs:
        if not isinstance(doc.get("benchmarks"), list):
            raise BadInputError(f"{name} is not a pytest-benchmark run (no 'benchmarks' list)")
    out.mkdir(parents=True, exist_ok=True)
    # One machine class (or runs saved without one) keeps the per-run report as it was.
    fleet = fleet_rows(docs) if len(machine_classes(docs)) >= 2 else None
    reports, documents, pngs = [], [], []
    for i, (name, doc) in enumerate(docs, start=1):
        rows, speedups = rows_of(doc, Path(name)), speedups_of(doc)
        summary = summarize(rows, speedups)
        pngs_of_run = plots(summary, rows, out, prefix=f"{i}-" if len(docs) > 1 else "")
        pngs += pngs_of_run
        reports.append((summary, speedups, [p.name for p in pngs_of_run]))
        # The saved run's own speedup entries, as stored (older runs lack fields a record would fill in).
        documents.append({"summary": summary, "speedups": doc.get("fastnas_bench", {}).get("speedups", {}),
                          "rows": [asdict(r) for r in rows]})
    md = out / "report.md"
    fleet_lines = [*(fleet_markdown(fleet) if fleet is not None else []), *([no_runs] if no_runs else [])]
    classes = [machine_class_of(doc, name) for name, doc in docs] if fleet is not None else []
    atomic_write_text(md, to_markdown(reports, [Path(name).name for name, _ in docs], fleet_lines, classes))
    js = out / "report.json"
    # ``summary`` is the newest run's, for readers of single-run reports.
    report: dict[str, Any] = {"summary": documents[-1]["summary"], "runs": documents}
    if fleet is not None:
        report["fleet"] = [row_of_json(r) for r in fleet]
        pngs.insert(0, fleet_plot(fleet, out / "fleet-speedup.png"))
    if no_runs:
        report["no_runs"] = no_runs
    atomic_write_text(js, json.dumps(report, indent=2))
    if job_summary is not None:
        if fleet is not None:
            lines = fleet_markdown(fleet, heading="## fastnas-bench fleet: newest run per machine class")
        else:
            summary, speedups, _ = reports[_newest(docs)]
            lines = headline_markdown(summary, speedups)
        append_job_summary(job_summary, "\n".join([*lines, *(["", no_runs] if no_runs else [])]))
    return [md, js, *pngs]


def write_no_runs_report(out: Path, no_runs: str, *, job_summary: Path | None = None) -> list[Path]:
    """``report.md`` and ``report.json`` saying ``no_runs`` (there is no saved run to report yet), and the same in
    the job summary; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    md, js = out / "report.md", out / "report.json"
    atomic_write_text(md, f"# fastnas-bench report\n\n{no_runs}\n")
    atomic_write_text(js, json.dumps({"summary": None, "runs": [], "no_runs": no_runs}, indent=2))
    if job_summary is not None:
        append_job_summary(job_summary, f"## fastnas-bench fleet: newest run per machine class\n\n{no_runs}")
    return [md, js]


def _newest(docs: Sequence[tuple[str, dict[str, Any]]]) -> int:
    """Index of the newest run: by save time where every run has one, else the last given (the order is oldest first)."""
    try:
        times = [saved_at(doc, name) for name, doc in docs]
    except BadInputError:
        return len(docs) - 1
    return max(range(len(docs)), key=lambda i: (times[i], i))


def step_summary_path(environ: Mapping[str, str] | None = None) -> Path | None:
    """The job-summary file GitHub Actions names in ``$GITHUB_STEP_SUMMARY``; ``None`` outside Actions."""
    value = (os.environ if environ is None else environ).get(STEP_SUMMARY_ENV)
    return Path(value) if value else None


def append_job_summary(path: Path, markdown: str) -> None:
    """Append ``markdown`` to ``path``: other steps of the job write to the same file, so never overwrite it.

    Raises:
        BadInputError: naming ``path`` where it cannot be opened for appending.
    """
    try:
        with path.open("a", encoding="utf-8") as f:
            # A blank line first: the previous writer may have left no newline, and Markdown tables need one.
            f.write("\n" + markdown.rstrip("\n") + "\n")
    except OSError as e:
        raise BadInputError(f"cannot append the job summary to {path} ({e.strerror})") from None
