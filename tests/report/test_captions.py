"""Captioned figures and tables, and the numbering of a report: sections, figures, tables,
references and the contents."""

import re

import nbformat
import pandas as pd
import pytest
from matplotlib.figure import Figure
from nbformat.v4 import new_code_cell, new_markdown_cell, new_output

from linmnist.report import captions, render, tables


def small_figure(width: float = 4.0) -> Figure:
    fig = Figure(figsize=(width, 2.0), dpi=50)
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], label="line")
    ax.legend(fontsize=5)
    return fig


def as_output(captioned) -> nbformat.NotebookNode:
    data, metadata = captioned._repr_mimebundle_()
    return new_output("display_data", data=data, metadata=metadata)


def code_cell(*outputs) -> nbformat.NotebookNode:
    return new_code_cell("x", outputs=list(outputs))


def test_figure_carries_its_label_caption_and_print_width():
    captioned = captions.figure(small_figure(), label="fig-line", caption="A line.")
    data, meta = captioned._repr_mimebundle_()
    assert set(data) == {"image/png", "text/plain"} and data["text/plain"] == "Figure: A line."
    assert meta[captions.OUTPUT_KEY]["label"] == "fig-line"
    assert 3.0 < meta[captions.OUTPUT_KEY]["width_in"] <= 4.0
    wide = captions.figure(small_figure(20.0), label="fig-wide", caption="Wide.")
    assert wide._repr_mimebundle_()[1][captions.OUTPUT_KEY]["width_in"] == captions.PRINT_WIDTH_IN


def test_figure_text_is_at_least_8_points():
    fig = small_figure()
    captions.figure(fig, label="fig-line", caption="A line.")
    legend = fig.axes[0].get_legend()
    assert min(t.get_fontsize() for t in legend.get_texts()) >= captions.MIN_FONT_PT


@pytest.mark.parametrize(
    ("label", "caption"), [("line", "A line."), ("tab-line", "A line."), ("fig-x", " ")]
)
def test_figure_refuses_bad_labels_and_empty_captions(label, caption):
    with pytest.raises(ValueError, match="label|caption"):
        captions.figure(small_figure(), label=label, caption=caption)


def test_table_is_a_styler_with_a_caption_and_a_fixed_uuid():
    frame = pd.DataFrame({"value": [0.5, float("nan")]}, index=pd.Index(["a", "b"], name="row"))
    first = captions.table(frame, label="tab-values", caption="Two values.")
    again = captions.table(frame, label="tab-values", caption="Two values.")
    html = first._repr_mimebundle_()[0]["text/html"]
    assert html == again._repr_mimebundle_()[0]["text/html"], "deterministic for nbval"
    assert 'id="T_tab-values"' in html and "Two values." in html
    assert "nan" not in html.lower() and tables.DASH in html
    assert html.count("<tr>") == 3, "no row of index names"


def report_cells():
    """Two sections, a figure and two tables, references in text and in a caption."""
    fig = as_output(captions.figure(small_figure(), label="fig-line", caption="After @tab-b."))
    table_a = as_output(captions.table(pd.DataFrame({"x": [1]}), label="tab-a", caption="A."))
    table_b = as_output(captions.table(pd.DataFrame({"y": [2]}), label="tab-b", caption="B."))
    plain = new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "fig"})
    story = new_output("display_data", data={"text/markdown": "See @fig-line.", "text/plain": ""})
    return [
        new_markdown_cell("# Title"),
        new_markdown_cell("## First {#sec-first}\n\nText citing @tab-b and @sec-second."),
        code_cell(table_a),
        new_markdown_cell("### Part\n\n```\n## not a heading\n```"),
        code_cell(fig, story),
        new_markdown_cell("## Second {#sec-second}\n\n@fig-gone is not in this build."),
        code_cell(table_b, plain),
        new_markdown_cell("## Unnumbered {.unnumbered}"),
    ]


def test_number_report_numbers_sections_figures_tables_and_resolves_references():
    cells = report_cells()
    numbering = captions.number_report(cells)
    sources = [c.source for c in cells if c.cell_type == "markdown"]
    assert sources[0] == "# Title", "the title is not numbered"
    assert '<h2 id="sec-first"><span class="section-number">1</span> First</h2>' in sources[1]
    assert "[Table 2](#tab-b)" in sources[1] and "[Section 2](#sec-second)" in sources[1]
    assert '<span class="section-number">1.1</span> Part</h3>' in sources[2]
    assert "## not a heading" in sources[2], "code blocks are left alone"
    assert "Figure (not in this build)" in sources[3]
    assert numbering.missing == ["fig-gone"]
    assert '<h2 id="sec-u-unnumbered">Unnumbered</h2>' in sources[4]
    figure = cells[4].outputs[0]["data"]["text/html"]
    assert '<span class="caption-number">Figure 1.</span>' in figure
    assert 'alt="Figure 1. After Table 2."' in figure
    assert '<a href="#tab-b">Table 2</a>' in figure, "captions link their references"
    assert cells[4].outputs[1]["data"]["text/markdown"] == "See [Figure 1](#fig-line)."
    assert (
        '<span class="caption-number">Table 1.</span> A.'
        in cells[2].outputs[0]["data"]["text/html"]
    )
    assert "Table 2." in cells[6].outputs[0]["data"]["text/html"]
    assert "Figure 2." in cells[6].outputs[1]["data"]["text/html"], "uncaptioned figures count"
    assert numbering.uncaptioned == ["fig-2"]


def test_adding_a_figure_renumbers_the_rest():
    cells = report_cells()
    extra = as_output(captions.figure(small_figure(), label="fig-new", caption="New."))
    cells.insert(2, code_cell(extra))
    captions.number_report(cells)
    assert "Figure 1." in cells[2].outputs[0]["data"]["text/html"]
    assert "Figure 2." in cells[5].outputs[0]["data"]["text/html"]
    assert cells[5].outputs[1]["data"]["text/markdown"] == "See [Figure 2](#fig-line)."


def test_contents_link_every_heading_in_nested_lists():
    cells = report_cells()
    numbering = captions.number_report(cells)
    html = captions.contents_html(numbering)
    anchors = re.findall(r'href="#([^"]+)"', html)
    assert anchors == ["sec-first", "sec-1-1-part", "sec-second", "sec-u-unnumbered"]
    assert html.count("<ul>") == html.count("</ul>") == 2
    ids = set()
    for cell in cells:
        if cell.cell_type == "markdown":
            ids |= set(re.findall(r'id="([^"]+)"', cell.source))
    assert set(anchors) <= ids


def test_a_short_table_is_kept_on_one_page_and_a_long_one_may_break():
    """Print keeps a table of at most SHORT_TABLE_ROWS rows whole (class "short"); a longer
    one breaks between rows rather than leave most of a page blank."""
    short = pd.DataFrame({"a": range(captions.SHORT_TABLE_ROWS)})
    long = pd.DataFrame({"a": range(captions.SHORT_TABLE_ROWS + 1)})

    def html_of(frame):
        return captions.table(frame, label="tab-x", caption="x").data["text/html"]

    assert '<figure class="report-table short"' in html_of(short)
    assert '<figure class="report-table"' in html_of(long)
    assert "figure.report-table.short { break-inside: avoid; }" in render.PRINT_CSS


FENCED = "# Title\n\n```python\n# a comment, not a heading\n@fig-line\n```\n\n    # indented code\n"


def test_demote_headings_moves_headings_only():
    assert captions.demote_headings("# A\n\ntext # not\n## B", 2) == "### A\n\ntext # not\n#### B"
    assert captions.demote_headings("##### deep", 3) == "###### deep"
    assert captions.demote_headings(FENCED, 1) == "#" + FENCED, "code is left alone"
    with pytest.raises(ValueError, match="levels"):
        captions.demote_headings("# A", -1)


def test_a_comment_in_a_fenced_block_is_not_numbered_as_a_heading():
    """Headings are what markdown-it parses: a ``#`` line in a fence or an indented block is
    code, whatever the fence (backticks, tildes, one inside the other)."""
    cells = [
        new_markdown_cell("## Real {#sec-real}\n\n" + FENCED.replace("# Title\n\n", "")),
        new_markdown_cell("~~~\n```\n## still code\n~~~\n\n### Part ###"),
    ]
    numbering = captions.number_report(cells)
    assert [entry[1:3] for entry in numbering.contents] == [("1", "Real"), ("1.1", "Part")]
    assert "```python\n# a comment, not a heading\n@fig-line\n```" in cells[0].source
    assert "    # indented code" in cells[0].source
    assert "## still code" in cells[1].source and numbering.missing == []


def test_references_in_code_are_left_as_written():
    cells = [
        new_markdown_cell("## Real {#sec-real}"),
        new_markdown_cell("See @sec-real, not `@sec-real` or ``a ` @sec-real``.\n\n    @sec-real"),
    ]
    captions.number_report(cells)
    assert cells[1].source == (
        "See [Section 1](#sec-real), not `@sec-real` or ``a ` @sec-real``.\n\n    @sec-real"
    )
