"""The proofreading checks, and the stored notebooks (the small MNIST build) pass them."""

import json
from pathlib import Path

import pytest

from linmnist.experiments.paths import NOTEBOOKS
from linmnist.report.proofread import (
    bad_headers,
    build_leaks,
    doubled_braces,
    doubled_kinds,
    e_notation,
)


def test_bad_headers_are_empty_or_punctuation_only():
    page = (
        "<table><thead><tr><th>(</th><th>&amp;</th><th></th><th class='x'>batch size</th>"
        "<th>N'</th><th><span>%</span></th></tr></thead><tr><td>(</td></tr></table>"
    )
    assert bad_headers(page) == ["(", "&", "", "%"]
    assert bad_headers("<table><th>lr</th><th>B = 1</th></table>") == []


@pytest.mark.parametrize(
    ("text", "dataset", "profile", "leaks"),
    [
        ("1,000 in the full build, 100 in the small one", "mnist", "small", ["full build"]),
        ("1,000 in the full build, 100 in the small one", "mnist", None, ["small one"]),
        ("This is a build of the profile “small”.", "mnist", "small", []),
        ("This is a build of the profile “small”.", "mnist", None, ["profile “small"]),
        ("The small profile runs in seconds.", "fashion-mnist", "small", []),
        ("As on Fashion-MNIST, the boundary moves.", "mnist", None, ["on Fashion-MNIST"]),
        ("Xiao et al. (2017). Fashion-MNIST: a novel image dataset.", "mnist", None, []),
        ("The study ran on MNIST.", "fashion-mnist", None, []),
        ("a profile that changes the grids", "mnist", None, []),
    ],
)
def test_build_leaks_name_other_builds_only(text, dataset, profile, leaks):
    assert build_leaks(text, dataset, profile) == leaks


def test_e_notation_finds_numbers_not_words():
    assert e_notation("2.5e+04 steps, 1e-3 and 3e5; not e-notation or the 2e") == [
        "2.5e+04",
        "1e-3",
        "3e5",
    ]


def test_doubled_kinds_find_a_kind_written_before_a_reference():
    text = "Figure @fig-a and table @tab-b; see @fig-c; Table [Table 2](#tab-x); Table 3 and 4"
    assert doubled_kinds(text) == ["Figure @fig-", "table @tab-", "Table [Table"]


def test_doubled_braces_find_an_escaped_brace_outside_an_f_string():
    found = doubled_braces("is $B_{{\\mathrm{{noise}}}}$ here")
    assert len(found) == 2 and found[0].startswith("is $B_{{")
    assert doubled_braces("is $B_{\\mathrm{noise}}$ here, {a}") == []


def _stored_text(path: Path) -> tuple[str, str]:
    """The Markdown a reader sees in a stored notebook, and its HTML outputs."""
    cells = json.loads(path.read_text(encoding="utf-8"))["cells"]
    markdown, pages = [], []
    for cell in cells:
        if cell["cell_type"] == "markdown":
            markdown.append("".join(cell["source"]))
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            markdown.append("".join(data.get("text/markdown", "")))
            pages.append("".join(data.get("text/html", "")))
    return "\n".join(markdown), "\n".join(pages)


@pytest.mark.parametrize("path", sorted(NOTEBOOKS.glob("*.ipynb")), ids=lambda p: p.stem)
def test_stored_notebooks_pass_the_proofreading(path):
    markdown, pages = _stored_text(path)
    assert bad_headers(pages) == []
    assert build_leaks(markdown, "mnist", "small") == []
    assert e_notation(markdown) == []
    assert doubled_kinds(markdown) == []
    assert doubled_braces(markdown) == []
