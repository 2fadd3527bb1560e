"""The report product: the executed task notebooks assembled into one document, HTML and PDF.

``report_job`` (the job of the pipeline's ``report`` product) reads the executed task
notebooks of its build in reading order, drops their parameter cells, moves their headings
one level down under the report's own title, scope and the table of what the study missed
(``templates/_missed.md.j2``), numbers the sections, figures and tables and resolves the
cross-references (``linmnist.report.captions``), puts the contents after the title, and
writes ``report.ipynb``, ``report.html`` (self-contained, MathJax inlined, code hidden) and
``report.pdf`` (WeasyPrint, mathematics pre-rendered, bookmarks from the headings). A
notebook that failed is included as it is, its error shown, so a report is written whatever
failed.
"""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

import nbformat

from linmnist.experiments.notebooks import FAILED_SUFFIX
from linmnist.experiments.paths import build_dir, notebooks_dir
from linmnist.report import captions, narrative, render
from linmnist.report.facts import ScopeFacts, scope_facts


def executed_notebook(directory: Path, stem: str) -> Path | None:
    """The executed notebook ``stem`` of a build (its failed copy if it failed), or None."""
    for name in (f"{stem}.ipynb", f"{stem}{FAILED_SUFFIX}"):
        if (directory / name).is_file():
            return directory / name
    return None


def _literal_profile(facts: ScopeFacts) -> ScopeFacts:
    """``facts`` whose profile name (the user's text) renders literally in Markdown."""
    if facts.profile is None:
        return facts
    return dataclasses.replace(facts, profile=narrative.markdown_literal(facts.profile))


def assemble(
    stems: list[str],
    directory: Path,
    *,
    dataset: str,
    profile: str | None,
    warnings: list[str] | None = None,
) -> nbformat.NotebookNode:
    """One notebook: the report's title, contents, scope and the table of what the study
    missed, then each executed notebook's cells, numbered (``captions.number_report``).

    Cross-references to labels no notebook defines, and figures without a caption, are
    appended to ``warnings`` when given.
    """
    facts = scope_facts(dataset, profile)
    opening = [narrative.render(name, facts) for name in ("scope", "introduction")]
    cells = [
        nbformat.v4.new_markdown_cell(
            "\n\n".join([f"# {narrative.title(_literal_profile(facts))}", *opening])
        )
    ]
    missed = narrative.environment().get_template("_missed.md.j2").render(facts=facts)
    cells.append(nbformat.v4.new_markdown_cell(missed.strip()))
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
    numbering = captions.number_report(cells)
    contents = '<h2 class="contents-title" id="contents">Contents</h2>\n\n'
    cells.insert(1, nbformat.v4.new_markdown_cell(contents + captions.contents_html(numbering)))
    if warnings is not None:
        warnings += [
            f"a reference to {label}, which is not in this build" for label in numbering.missing
        ]
        warnings += [f"figure {label} has no caption" for label in numbering.uncaptioned]
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
    warnings: list[str] = []
    nb = assemble(
        params["notebooks"],
        notebooks_dir(build),
        dataset=dataset,
        profile=profile,
        warnings=warnings,
    )
    for warning in warnings:
        print(f"warning: {warning}", file=sys.stderr)
    title = narrative.title(scope_facts(dataset, profile))
    render.atomic_write(out / "report.ipynb", nbformat.writes(nb))
    render.atomic_write(out / "report.html", render.notebook_html(nb, title=title))
    unrendered: list[str] = []
    page = render.print_html(nb, title=title, failures=unrendered)
    for problem in unrendered:
        print(f"warning: the PDF shows a formula as code: {problem}", file=sys.stderr)
    cut_off: list[str] = []
    pages = render.write_pdf(page, out / "report.pdf", cut_off=cut_off)
    for problem in cut_off:
        print(f"warning: the PDF cuts off {problem}", file=sys.stderr)
    failed = [
        s for s in params["notebooks"] if (notebooks_dir(build) / f"{s}{FAILED_SUFFIX}").is_file()
    ]
    return {"pages": pages, "failed_notebooks": failed, "cut_off": cut_off}
