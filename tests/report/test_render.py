"""Rendering: self-contained HTML with MathJax, printable HTML with SVG math, included notebooks."""

import base64
import os
import re

import nbformat
import pytest

from linmnist.report import render


def small_notebook():
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {
        "name": "linmnist",
        "display_name": "linmnist",
        "language": "python",
    }
    nb.cells = [
        nbformat.v4.new_markdown_cell(
            "# Title\n\nInline $\\lambda_{\\max} < 2$ and display\n\n"
            "$$L(W) = \\frac{1}{2N}\\sum_{i=1}^{N} \\|W x_i - y_i\\|^2$$"
        ),
        nbformat.v4.new_code_cell(
            "secret_code_line = 1",
            outputs=[
                nbformat.v4.new_output(
                    "display_data",
                    data={"text/markdown": "Out $\\eta = 0.05$", "text/plain": "<md>"},
                ),
                nbformat.v4.new_output("stream", name="stdout", text="cost is $5 and $6\n"),
            ],
        ),
    ]
    return nb


def test_math_image_is_an_inline_svg_on_the_baseline():
    tag = render.math_image(r"\frac{1}{2N} \sum_i x_i")
    src = re.search(r'src="data:image/svg\+xml;base64,([^"]+)"', tag).group(1)
    assert base64.b64decode(src).lstrip().startswith(b"<?xml")
    depth = float(re.search(r"vertical-align:-([\d.]+)em", tag).group(1))
    height = float(re.search(r"height:([\d.]+)em", tag).group(1))
    assert 0 < depth < height
    assert 'alt="\\frac{1}{2N} \\sum_i x_i"' in tag


def test_math_image_translates_mathjax_only_commands():
    tag = render.math_image(r"\lVert W x \rVert \le \tfrac{1}{2} \operatorname*{argmax}_k")
    assert 'alt="\\lVert W x \\rVert' in tag, "the alt text keeps the original TeX"


def test_math_image_reads_formulas_over_several_lines_and_text():
    tex = "\\left(\\frac{S}{S_{\\min}} - 1\\right) = 1,\n\\qquad B_{\\text{crit}}"
    tag = render.math_image(tex)
    assert tag.startswith('<img class="math"')


def test_math_image_rejects_what_mathtext_cannot_parse():
    with pytest.raises(ValueError, match="mathtext cannot render"):
        render.math_image(r"\begin{aligned} x \end{aligned}")


def test_render_math_replaces_text_math_but_not_code():
    page = (
        "<p>a $x^2$ b</p><p>$$\\frac{a}{b}$$</p><pre>$keep$</pre>"
        "<code>$also$</code><script>var s = '$js$';</script><p>a &lt; $y &lt; 1$</p>"
    )
    out = render.render_math(page)
    assert out.count('<img class="math"') == 3
    assert '<div class="math-display">' in out
    assert "<pre>$keep$</pre>" in out and "<code>$also$</code>" in out and "'$js$'" in out
    assert 'alt="y &lt; 1"' in out, "entities are unescaped before rendering"


def test_render_math_keeps_unparsable_formulas_as_code_and_reports_them():
    failures = []
    out = render.render_math("<p>$\\begin{x}$</p>", failures=failures)
    assert "<code>\\begin{x}</code>" in out
    assert len(failures) == 1 and "mathtext cannot render" in failures[0]


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_notebook_html_is_self_contained_with_mathjax_and_hides_code():
    page = render.notebook_html(small_notebook(), title="My report")
    assert "<title>My report</title>" in page
    assert "window.MathJax = {" in page
    assert render.mathjax_script()[-300:] in page, "the MathJax bundle is inlined"
    assert not re.search(r'<(script|link|img)[^>]+(src|href)="(https?:)?//', page)
    assert "secret_code_line" not in page
    assert "Inline $\\lambda_{\\max} &lt; 2$" in page, "MathJax typesets the TeX in the browser"
    assert "secret_code_line" in render.notebook_html(small_notebook(), include_code=True)


def test_notebook_html_can_share_one_mathjax_copy():
    page = render.notebook_html(small_notebook(), mathjax_src="../tex-svg.js")
    assert '<script src="../tex-svg.js"></script>' in page
    assert len(page) < len(render.mathjax_script())


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_the_page_made_in_another_process_is_the_page_made_here(tmp_path, monkeypatch):
    """html_in_background writes notebook_html of the notebook file, byte for byte, started
    from another directory without PYTHONPATH."""
    source, nb = tmp_path / "report.ipynb", small_notebook()
    nbformat.write(nb, source)
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("PYTHONPATH", raising=False)
    render.wait_html(render.html_in_background(source, tmp_path / "page.html", title="Mine"))
    written = (tmp_path / "page.html").read_text(encoding="utf-8")
    assert written == render.notebook_html(nb, title="Mine")


@pytest.mark.slow  # about a second: make test, not make test-fast
def test_a_page_that_failed_in_another_process_is_one_line(tmp_path):
    absent, page = tmp_path / "absent.ipynb", tmp_path / "page.html"
    process = render.html_in_background(absent, page, title="t")
    with pytest.raises(RuntimeError, match=r"^the report's HTML page was not written: .*absent"):
        render.wait_html(process)
    assert not page.exists()


def test_print_html_has_no_script_and_math_as_images():
    page = render.print_html(small_notebook())
    assert "<script" not in page
    assert page.count('<img class="math"') == 3
    assert "\\frac" not in re.sub(r'alt="[^"]*"', "", page)
    text = re.sub(r"<[^>]+>", "", page)
    assert "\\lambda" not in text and "$$" not in text
    assert "cost is $5 and $6" in text, "dollars in stream output (pre) are left alone"


@pytest.mark.slow
def test_write_pdf_counts_pages_and_writes_atomically(tmp_path):
    target = tmp_path / "out.pdf"
    pages = render.write_pdf(render.print_html(small_notebook()), target)
    assert pages == 1
    assert target.read_bytes().startswith(b"%PDF")
    assert [p.name for p in tmp_path.iterdir()] == ["out.pdf"]


def test_atomic_write_honours_the_umask(tmp_path):
    target = tmp_path / "page.html"
    render.atomic_write(target, "<p>x</p>")
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    assert target.read_text() == "<p>x</p>"


@pytest.mark.slow
def test_write_pdf_reports_what_the_page_cuts_off(tmp_path):
    cells = "".join(
        f"<td style='white-space:nowrap'>column {k} of a wide table</td>" for k in range(9)
    )
    cut_off = []
    render.write_pdf(f"<table><tr>{cells}</tr></table>", tmp_path / "wide.pdf", cut_off=cut_off)
    assert cut_off and all(c.startswith("page 1: 'column") for c in cut_off)
    fits = []
    render.write_pdf(render.print_html(small_notebook()), tmp_path / "fits.pdf", cut_off=fits)
    assert fits == []


def test_mathjax_is_the_npm_release_checked_by_sha256(tmp_path, monkeypatch, http_files, capsys):
    """The cached tarball is checked every time; a bad one is moved aside with one warning
    line and fetched again, and a download that is not the release is refused with a clear
    error."""
    from linmnist.engine import data
    from linmnist.report import mathjax

    assert render.mathjax_script().startswith(mathjax.script()[:100])
    assert "Apache License" in mathjax.license()
    bad = tmp_path / f"mathjax-{mathjax.VERSION}.tgz"
    bad.write_bytes(b"not MathJax")
    origin, serve, asked = http_files
    serve[f"/{bad.name}"] = b"still not"
    monkeypatch.setattr(mathjax, "tarball_path", lambda: bad)
    monkeypatch.setattr(mathjax, "URL", origin + bad.name)
    monkeypatch.setattr(data, "_host_reachable", lambda *args, **kwargs: True)
    mathjax._tarball.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="does not have the SHA-256"):
            mathjax.script()
    finally:
        mathjax._tarball.cache_clear()
    assert len(list(tmp_path.glob("*.corrupt-*"))) == 1 and not bad.exists()
    assert asked == [f"/{bad.name}"]
    warning = capsys.readouterr().err.strip().splitlines()
    assert len(warning) == 1 and "failed its SHA-256 check" in warning[0]
