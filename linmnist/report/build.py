"""The report product: the executed task notebooks assembled into one document, HTML and PDF.

``report_job`` reads the executed notebooks in reading order without their parameter cells,
headings one level down, numbers and cross-references them (``captions``), proofreads the
result and writes ``report.ipynb``, ``report.html`` and ``report.pdf``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat

from linmnist.experiments.notebooks import FAILED_SUFFIX
from linmnist.experiments.paths import build_dir, notebooks_dir
from linmnist.report import captions, proofread, render
from linmnist.report.study import dataset_name
from linmnist.report.tables import markdown_literal


def executed_notebook(directory: Path, stem: str) -> Path | None:
    """The executed notebook ``stem`` of a build (its failed copy if it failed), or None."""
    for name in (f"{stem}.ipynb", f"{stem}{FAILED_SUFFIX}"):
        if (directory / name).is_file():
            return directory / name
    return None


def report_title(dataset: str, profile: str | None, *, markdown: bool = False) -> str:
    """The report's title: the dataset and the profile (escaped for Markdown if asked)."""
    title = (
        "How batch size, learning rate and data size shape minibatch SGD: "
        f"a linear {dataset_name(dataset)} classifier"
    )
    if profile is None:
        return title
    return f"{title} ({markdown_literal(profile) if markdown else profile} profile)"


def assemble(
    stems: list[str],
    directory: Path,
    *,
    dataset: str,
    profile: str | None,
    warnings: list[str] | None = None,
) -> nbformat.NotebookNode:
    """One notebook: the title and contents, then each executed notebook's cells, numbered."""
    cells = [nbformat.v4.new_markdown_cell(f"# {report_title(dataset, profile, markdown=True)}")]
    for stem in stems:
        path = executed_notebook(directory, stem)
        if path is None:
            text = f"## {stem}\n\nThis notebook was not executed."
            cells.append(nbformat.v4.new_markdown_cell(text))
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & {"parameters", "injected-parameters"}:
                continue
            if cell.cell_type == "markdown":
                cell.source = captions.demote_headings(cell.source, 1)
            cells.append(cell)
    numbering = captions.number_report(cells)
    contents = '<h2 class="contents-title" id="contents">Contents</h2>\n\n'
    cells.insert(1, nbformat.v4.new_markdown_cell(contents + captions.contents_html(numbering)))
    if warnings is not None:
        warnings += [f"a reference to {x}, which is not in this build" for x in numbering.missing]
        warnings += [f"figure {label} has no caption" for label in numbering.uncaptioned]
    nb = nbformat.v4.new_notebook(cells=cells)
    kernel = {"name": "linmnist", "display_name": "linmnist", "language": "python"}
    nb.metadata["kernelspec"] = kernel
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def proofread_report(
    nb: nbformat.NotebookNode, page: str, *, dataset: str, profile: str | None
) -> list[str]:
    """What ``linmnist.report.proofread`` finds in an assembled report (notebook and HTML)."""
    texts = [c.source for c in nb.cells if c.cell_type == "markdown"]
    outputs = [o.get("data", {}) for c in nb.cells for o in c.get("outputs", [])]
    text = "\n".join(texts + ["".join(data.get("text/markdown", "")) for data in outputs])
    problems = [f"a table header reads {h!r}" for h in proofread.bad_headers(page)]
    leaks = proofread.build_leaks(text, dataset, profile)
    problems += [f"the text names another build: {p!r}" for p in leaks]
    problems += [f"a reference after its kind: {r!r}" for r in proofread.doubled_kinds(text)]
    problems += [f"a doubled brace: {b!r}" for b in proofread.doubled_braces(text)]
    return problems + [f"a number in e-notation: {n}" for n in proofread.e_notation(text)]


def report_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """Write ``report.ipynb``, ``report.html`` and ``report.pdf`` of a build into ``out``."""
    dataset, profile = params["dataset"], params["profile"]
    build = build_dir(dataset, profile, params.get("config"))
    warnings: list[str] = []
    directory = notebooks_dir(build)
    nb = assemble(
        params["notebooks"], directory, dataset=dataset, profile=profile, warnings=warnings
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    title = report_title(dataset, profile)
    render.atomic_write(out / "report.ipynb", nbformat.writes(nb))
    page_process = render.html_in_background(out / "report.ipynb", out / "report.html", title=title)
    try:
        unrendered: list[str] = []
        printed = render.print_html(nb, title=title, failures=unrendered)
        cut_off: list[str] = []
        pages = render.write_pdf(printed, out / "report.pdf", cut_off=cut_off)
    finally:
        render.wait_html(page_process)
    page = (out / "report.html").read_text(encoding="utf-8")
    problems = proofread_report(nb, page, dataset=dataset, profile=profile)
    shown = [f"the PDF shows a formula as code: {p}" for p in unrendered]
    for warning in problems + shown + [f"the PDF cuts off {p}" for p in cut_off]:
        print(f"warning: {warning}", file=sys.stderr)
    failed = [s for s in params["notebooks"] if (directory / f"{s}{FAILED_SUFFIX}").is_file()]
    return {"pages": pages, "failed_notebooks": failed, "cut_off": cut_off, "proofread": problems}
