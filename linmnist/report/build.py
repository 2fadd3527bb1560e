"""The report product: the executed task notebooks assembled into one document, HTML and PDF.

``report_job`` (the job of the pipeline's ``report`` product) reads the executed task
notebooks of its build in reading order, drops their parameter cells, moves their headings
one level down under the report's own title and scope, and writes ``report.ipynb``,
``report.html`` (self-contained, MathJax inlined, code hidden) and ``report.pdf``
(WeasyPrint, mathematics pre-rendered). A notebook that failed is included as it is, its
error shown, so a report is written whatever failed.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import nbformat

from linmnist.experiments.notebooks import FAILED_SUFFIX
from linmnist.experiments.paths import build_dir, notebooks_dir
from linmnist.report import narrative, render
from linmnist.report.facts import scope_facts


def executed_notebook(directory: Path, stem: str) -> Path | None:
    """The executed notebook ``stem`` of a build (its failed copy if it failed), or None."""
    for name in (f"{stem}.ipynb", f"{stem}{FAILED_SUFFIX}"):
        if (directory / name).is_file():
            return directory / name
    return None


def assemble(
    stems: list[str], directory: Path, *, dataset: str, profile: str | None
) -> nbformat.NotebookNode:
    """One notebook: the report's title and scope, then each executed notebook's cells."""
    facts = scope_facts(dataset, profile)
    opening = [narrative.render(name, facts) for name in ("scope", "introduction")]
    cells = [nbformat.v4.new_markdown_cell("\n\n".join([f"# {narrative.title(facts)}", *opening]))]
    for stem in stems:
        path = executed_notebook(directory, stem)
        if path is None:
            cells.append(
                nbformat.v4.new_markdown_cell(f"## {stem}\n\nThis notebook was not executed.")
            )
            continue
        for cell in nbformat.read(path, as_version=4).cells:
            tags = set(cell.get("metadata", {}).get("tags", []))
            if tags & {"parameters", "injected-parameters"}:
                continue
            if cell.cell_type == "markdown":
                cell.source = render.demote_headings(cell.source, 1)
            cells.append(cell)
    nb = nbformat.v4.new_notebook(cells=cells)
    nb.metadata["kernelspec"] = {
        "name": "linmnist",
        "display_name": "linmnist",
        "language": "python",
    }
    nb.metadata["language_info"] = {"name": "python"}
    return nb


def report_job(params: dict[str, Any], out: Path, stem: str) -> dict[str, Any]:
    """Write ``report.ipynb``, ``report.html`` and ``report.pdf`` of a build into ``out``."""
    dataset, profile = params["dataset"], params["profile"]
    build = build_dir(dataset, profile, params.get("config"))
    nb = assemble(params["notebooks"], notebooks_dir(build), dataset=dataset, profile=profile)
    title = narrative.title(scope_facts(dataset, profile))
    render.atomic_write(out / "report.ipynb", nbformat.writes(nb))
    render.atomic_write(out / "report.html", render.notebook_html(nb, title=title))
    unrendered: list[str] = []
    page = render.print_html(nb, title=title, failures=unrendered)
    for problem in unrendered:
        print(f"warning: the PDF shows a formula as code: {problem}", file=sys.stderr)
    pages = render.write_pdf(page, out / "report.pdf", base_url=str(build))
    failed = [
        s for s in params["notebooks"] if (notebooks_dir(build) / f"{s}{FAILED_SUFFIX}").is_file()
    ]
    return {"pages": pages, "failed_notebooks": failed}
