"""Executed notebooks to self-contained HTML and PDF.

``notebook_html``: nbconvert's JupyterLab page, figures embedded and MathJax 3
(``linmnist.report.mathjax``) inlined, so that it loads nothing from the network.
``print_html``: the same cells with a print style sheet (A4, page numbers) and every formula
pre-rendered to SVG with matplotlib's mathtext (WeasyPrint runs no JavaScript), for ``write_pdf``.
"""

from __future__ import annotations

import base64
import functools
import html
import io
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import nbformat
from jinja2 import DictLoader
from matplotlib.font_manager import FontProperties
from matplotlib.mathtext import math_to_image
from nbconvert import HTMLExporter

from linmnist.experiments.results import atomic_write
from linmnist.report import mathjax

MATHJAX_CONFIG = """window.MathJax = {
  tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']],
        displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']],
        processEscapes: true},
  svg: {fontCache: 'global'},
  options: {skipHtmlTags: ['script', 'noscript', 'style', 'textarea', 'pre', 'code']}
};"""
# Figures, tables, captions and the contents, on screen and on paper.
COMMON_CSS = """
figure.report-figure, figure.report-table { margin: 8px 0 14px; }
figure.report-figure > img { max-width: 100%; height: auto; display: block; }
figcaption { font-size: 0.92em; color: #333; margin: 4px 0; max-width: 48em; }
.caption-number, .section-number { font-weight: bold; }
.section-number { margin-right: 0.35em; }
figure.report-table table { border-collapse: collapse; }
figure.report-table th { text-align: left; vertical-align: bottom; font-weight: bold; }
figure.report-table td { vertical-align: top; text-align: right; }
figure.report-table td:first-child, figure.report-table tr th:first-child { text-align: left; }
nav.report-contents ul { list-style: none; padding-left: 1.2em; margin: 0; }
nav.report-contents > ul { padding-left: 0; }
"""
REPORT_CSS = (
    COMMON_CSS
    + """
body { max-width: 1100px; margin: 0 auto; }
.jp-RenderedHTMLCommon table { font-size: 12px; }
.jp-RenderedHTMLCommon td, .jp-RenderedHTMLCommon th { white-space: normal; }
.jp-OutputArea-output img { max-width: 100%; height: auto; }
"""
)
PRINT_CSS = (
    COMMON_CSS
    + """
@page { size: A4; margin: 16mm 14mm 18mm 14mm;
        @bottom-center { content: counter(page) " / " counter(pages);
                         font-size: 8pt; color: #666; } }
body { font-family: "DejaVu Sans", sans-serif; font-size: 9.5pt; line-height: 1.4; color: #111; }
h1 { font-size: 18pt; margin: 0 0 6pt; } h2 { font-size: 14pt; margin: 14pt 0 4pt;
      break-after: avoid; } h3 { font-size: 11pt; break-after: avoid; }
h2 { break-before: auto; }
a.anchor-link { display: none; }
.jp-InputPrompt, .jp-OutputPrompt, .jp-Collapser { display: none; }
img { max-width: 100%; height: auto; }
h1, h2, h3, h4, p, li { overflow-wrap: break-word; }
img.math { max-width: none; }
p, li { orphans: 3; widows: 3; }
/* Text stays with what it leads into: a heading or a sentence with its figure or table. */
.jp-MarkdownCell { break-after: avoid; }
/* A displayed equation stays with the sentence that leads into it. */
div.math-display { text-align: center; margin: 6pt 0; break-before: avoid; }
/* A long table breaks between rows, its header repeated, rather than leave a page blank. */
table { border-collapse: collapse; font-size: 7.5pt; margin: 4pt 0 8pt; max-width: 100%; }
thead { display: table-header-group; } tr { break-inside: avoid; }
th, td { border-bottom: 0.5pt solid #bbb; padding: 2pt 3pt; text-align: left;
         overflow-wrap: break-word; }
table.wide { width: 100%; }
th { background: #eee; }
figcaption { font-size: 8.5pt; }
figure.report-figure { break-inside: avoid; margin: 4pt 0 10pt; }
figure.report-table { margin: 4pt 0 10pt; }
figure.report-table figcaption { break-after: avoid; }
figure.report-table.short { break-inside: avoid; }
nav.report-contents { font-size: 8.5pt; line-height: 1.3; break-after: page; }
nav.report-contents a { color: #111; text-decoration: none; }
nav.report-contents a::after { content: leader(". ") target-counter(attr(href), page); }
h2.contents-title { bookmark-level: none; }
a { color: #1a4f8b; }
pre { white-space: pre-wrap; font-size: 7.5pt; background: #f6f6f6; padding: 4pt; }
.jp-RenderedText { break-inside: avoid; }
.jp-RenderedText[data-mime-type="application/vnd.jupyter.stderr"] pre { background: #fdd; }
"""
)
_TEMPLATES = {
    "report.html.j2": """{%- extends 'index.html.j2' -%}
{%- block html_head_js_requirejs -%}{%- endblock html_head_js_requirejs -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}
<script>{{ resources.mathjax_config }}</script>
{%- if resources.mathjax_src %}
<script src="{{ resources.mathjax_src }}"></script>
{%- else %}
<script>{{ resources.mathjax_js }}</script>
{%- endif %}
{%- endblock html_head_js_mathjax -%}
{% block extra_css %}<style>{{ resources.report_css }}</style>{% endblock extra_css %}
""",
    "print.html.j2": """{%- extends 'index.html.j2' -%}
{%- block html_head_js -%}{%- endblock html_head_js -%}
{%- block html_head_js_mermaidjs -%}{%- endblock html_head_js_mermaidjs -%}
{%- block html_head_js_mathjax -%}{%- endblock html_head_js_mathjax -%}
{%- block notebook_css -%}<style>{{ resources.print_css }}</style>{%- endblock notebook_css -%}
""",
}
_SKIP_TAGS = ("script", "style", "pre", "code", "textarea", "title")
_TAG = re.compile(r"(<[^>]+>)")
_DISPLAY = re.compile(r"\$\$(.+?)\$\$", re.DOTALL)
_INLINE = re.compile(r"(?<![\\$])\$(?!\$)(.+?)(?<![\\$])\$(?!\$)", re.DOTALL)
# TeX commands that MathJax knows and mathtext lacks, with their mathtext equivalents.
_MATHTEXT_EQUIVALENTS = {
    "lVert": r"\Vert",
    "rVert": r"\Vert",
    "lvert": "|",
    "rvert": "|",
    "le": r"\leq",
    "ge": r"\geq",
    "tfrac": r"\frac",
    "displaystyle": "",
    "textstyle": "",
    "text": r"\mathrm",
}
_COMMAND = re.compile(r"\\([a-zA-Z]+)(\*?)")
_SVG_HEIGHT = re.compile(rb'<svg[^>]*\sheight="([0-9.]+)pt"')


def mathjax_script() -> str:
    """The MathJax 3 ``tex-svg`` bundle, checked by ``linmnist.report.mathjax``."""
    return mathjax.script()


def _read(notebook) -> nbformat.NotebookNode:
    if isinstance(notebook, nbformat.NotebookNode):
        return notebook
    return nbformat.read(os.fspath(notebook), as_version=4)


def _export(nb, template_file: str, extra: dict, *, include_code: bool, title: str | None) -> str:
    """The page of ``nb`` by ``template_file``, titled ``title``, with resources ``extra``."""
    if title is not None:
        extra["metadata"] = {"name": title}
    exporter = HTMLExporter(
        template_name="lab",
        template_file=template_file,
        extra_loaders=[DictLoader(_TEMPLATES)],
        exclude_input=not include_code,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
    )
    return exporter.from_notebook_node(nb, resources=extra)[0]


def notebook_html(
    notebook,
    *,
    include_code: bool = False,
    title: str | None = None,
    mathjax_src: str | None = None,
) -> str:
    """An HTML page of an executed notebook, MathJax inlined or loaded from ``mathjax_src``."""
    extra: dict[str, Any] = {
        "mathjax_config": MATHJAX_CONFIG,
        "mathjax_src": mathjax_src,
        "mathjax_js": "" if mathjax_src else mathjax_script(),
        "report_css": REPORT_CSS,
    }
    return _export(_read(notebook), "report.html.j2", extra, include_code=include_code, title=title)


def write_html(notebook: str | os.PathLike, target: str | os.PathLike, title: str) -> None:
    """Write ``notebook_html`` of the notebook file ``notebook`` to ``target``, atomically."""
    atomic_write(target, notebook_html(notebook, title=title))


def html_in_background(
    notebook: str | os.PathLike, target: str | os.PathLike, *, title: str
) -> subprocess.Popen:
    """Start ``write_html`` in another process (another core); ``wait_html`` waits."""
    package_root = str(Path(__file__).resolve().parents[2])
    path = os.pathsep.join(filter(None, [package_root, os.environ.get("PYTHONPATH")]))
    code = "import sys; from linmnist.report.render import write_html; write_html(*sys.argv[1:])"
    return subprocess.Popen(
        [sys.executable, "-c", code, os.fspath(notebook), os.fspath(target), title],
        env={**os.environ, "PYTHONPATH": path},
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_html(process: subprocess.Popen) -> None:
    """Wait for ``html_in_background``; a RuntimeError with its last error line if it failed."""
    _, errors = process.communicate()
    if process.returncode:
        last = (errors or "").strip().splitlines()[-1:] or [f"exit status {process.returncode}"]
        raise RuntimeError(f"the report's HTML page was not written: {last[0]}")


def print_html(
    notebook,
    *,
    include_code: bool = False,
    title: str | None = None,
    failures: list[str] | None = None,
) -> str:
    """HTML for printing (WeasyPrint): no scripts, formulas pre-rendered to SVG."""
    nb = _read(notebook)
    if not include_code:
        # A code cell without output prints as an empty block, which would separate a
        # heading from what follows it (a break is avoided only between siblings).
        nb = nbformat.v4.new_notebook(
            cells=[c for c in nb.cells if c.cell_type != "code" or c.get("outputs")],
            metadata=nb.metadata,
        )
    extra: dict[str, Any] = {"print_css": PRINT_CSS}
    body = _export(nb, "print.html.j2", extra, include_code=include_code, title=title)
    return render_math(body, failures=failures)


@functools.lru_cache(maxsize=1024)
def math_image(tex: str, *, display: bool = False, fontsize: float = 11.0) -> str:
    """An ``<img>`` of the TeX formula ``tex`` as an SVG on the line (cached)."""
    size = fontsize * (1.2 if display else 1.0)
    prop = FontProperties(family="DejaVu Sans", size=size, math_fontfamily="dejavusans")
    source = f"${_mathtext_dialect(tex).strip()}$"
    try:
        buffer = io.BytesIO()
        depth = math_to_image(source, buffer, prop=prop, dpi=72, format="svg")
    except ValueError as exc:
        raise ValueError(f"mathtext cannot render {tex!r}: {exc}".splitlines()[0]) from None
    svg = buffer.getvalue()
    # At 72 dpi the figure is the formula's box, in points: its height is the SVG's.
    height = float(_SVG_HEIGHT.search(svg).group(1)) / fontsize  # type: ignore[union-attr]
    depth /= fontsize
    data = base64.b64encode(svg).decode("ascii")
    style = f"height:{height:.3f}em;vertical-align:-{depth:.3f}em"
    alt = html.escape(tex.strip(), quote=True)
    return f'<img class="math" alt="{alt}" style="{style}" src="data:image/svg+xml;base64,{data}">'


def _mathtext_dialect(tex: str) -> str:
    """``tex`` on one line, with ``_MATHTEXT_EQUIVALENTS``' commands in mathtext's words."""

    def replace(match: re.Match) -> str:
        name, star = match.group(1), match.group(2)
        if name in _MATHTEXT_EQUIVALENTS:
            return _MATHTEXT_EQUIVALENTS[name] + " "
        return "\\" + name + ("" if name == "operatorname" else star)

    # mathtext reads one line: a formula written over several lines is joined.
    return _COMMAND.sub(replace, " ".join(tex.split()))


def _render_text(text: str, failures: list[str]) -> str:
    def replace(match: re.Match, *, display: bool) -> str:
        tex = html.unescape(match.group(1))
        try:
            image = math_image(tex, display=display)
        except ValueError as exc:
            failures.append(str(exc))
            return f"<code>{html.escape(tex)}</code>"
        return f'<div class="math-display">{image}</div>' if display else image

    text = _DISPLAY.sub(lambda m: replace(m, display=True), text)
    return _INLINE.sub(lambda m: replace(m, display=False), text)


def render_math(page: str, *, failures: list[str] | None = None) -> str:
    """Every ``$$...$$`` and ``$...$`` of an HTML page as an SVG image."""
    failures = [] if failures is None else failures
    parts = _TAG.split(page)
    skipping: list[str] = []
    for i, part in enumerate(parts):
        if part.startswith("<"):
            name = re.match(r"</?\s*([a-zA-Z0-9]+)", part)
            tag = name.group(1).lower() if name else ""
            if tag in _SKIP_TAGS and not part.endswith("/>"):
                if part.startswith("</"):
                    if skipping and skipping[-1] == tag:
                        skipping.pop()
                else:
                    skipping.append(tag)
        elif not skipping and "$" in part:
            parts[i] = _render_text(part, failures)
    return "".join(parts)


def write_pdf(
    page: str,
    path: str | os.PathLike,
    *,
    base_url: str | None = None,
    cut_off: list[str] | None = None,
) -> int:
    """Write the PDF of an HTML page with WeasyPrint, atomically; return its page count."""
    from weasyprint import HTML

    document = HTML(string=page, base_url=base_url).render()
    if cut_off is not None:
        cut_off += cut_off_boxes(document)
    buffer = io.BytesIO()
    document.write_pdf(buffer)
    atomic_write(path, buffer.getvalue())
    return len(document.pages)


def cut_off_boxes(document) -> list[str]:
    """What a WeasyPrint document draws beyond its page's sides, as "page n: text"."""
    from weasyprint.formatting_structure import boxes

    drawn = (boxes.TextBox, boxes.InlineReplacedBox, boxes.BlockReplacedBox)
    found = []
    for number, page in enumerate(document.pages, 1):
        stack = [page._page_box]
        while stack:
            box = stack.pop()
            stack.extend(getattr(box, "children", []))
            if not isinstance(box, drawn):
                continue
            if box.position_x < -0.5 or box.position_x + box.margin_width() > page.width + 0.5:
                found.append(f"page {number}: {getattr(box, 'text', 'an image')[:60]!r}")
    return found
