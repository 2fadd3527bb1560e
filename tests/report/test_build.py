"""The report: the small build made by the real code path, read back as HTML, in a browser,
as PDF; and its assembly from executed notebooks."""

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from linmnist.experiments.paths import REPORTS
from linmnist.report.build import assemble, report_title

SECTIONS = (
    "Summary",
    "Introduction",
    "What the study missed, and where this report answers it",
    "Task 1 — the data",
    "Task 2 — baseline SGD: learning rate 0.001, batch size 100",
    "Task 3 — learning rate × batch size",
    "Task 4 — the role of the batch size",
    "Task 5 — the training-set size N'",
    "Task 6 — the same model in numpy, PyTorch and Keras",
    "The stability map: up to which learning rate SGD converges",
    "Beyond the study — the batch-size scaling law of SGD",
    "Conclusions",
    "Limitations",
    "References",
    "Symbols",
    "Appendix: reproducibility",
)
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


class _Text(HTMLParser):
    """Visible text, headings and links of a page (script and style skipped)."""

    def __init__(self):
        super().__init__()
        self.text, self.headings, self.links, self._skip, self._heading = [], [], [], 0, None

    def handle_starttag(self, tag, attrs):
        if tag in ("script", "style"):
            self._skip += 1
        if re.fullmatch(r"h[1-6]", tag):
            self._heading = []
        if tag == "a" and dict(attrs).get("href"):
            self.links.append(dict(attrs)["href"])

    def handle_endtag(self, tag):
        if tag in ("script", "style"):
            self._skip -= 1
        if re.fullmatch(r"h[1-6]", tag) and self._heading is not None:
            self.headings.append("".join(self._heading).replace("¶", "").strip())
            self._heading = None

    def handle_data(self, data):
        if not self._skip:
            self.text.append(data)
            if self._heading is not None:
                self._heading.append(data)


def parse(path):
    parser = _Text()
    parser.feed(Path(path).read_text(encoding="utf-8"))
    return parser


@pytest.fixture(scope="module")
def built(small_build):
    """The small build's report, made (or found up to date) by ``python -m linmnist report``."""
    return small_build / "report.html", small_build / "report.pdf"


def unnumbered(heading: str) -> str:
    """A heading without its section number ("3.1 Curves" -> "Curves")."""
    return re.sub(r"^\d+(\.\d+)* ", "", heading)


@pytest.mark.integration
def test_html_has_the_title_every_section_in_order_and_says_it_is_a_small_build(built):
    page = parse(built[0])
    assert page.headings[0].endswith("(small profile)")
    headings = [unnumbered(h) for h in page.headings]
    order = [headings.index(section) for section in SECTIONS]
    assert order == sorted(order)
    assert len(set(page.headings)) == len(page.headings), "no heading is doubled"
    numbers = [h.split()[0] for h in page.headings if re.match(r"\d+ ", h)]
    assert numbers == [str(k) for k in range(1, len(numbers) + 1)], "sections numbered 1, 2, ..."
    text = " ".join(" ".join(page.text).split())
    assert "This is a build of the profile “small”" in text
    assert "Traceback" not in text and "MissingResults" not in text
    assert "not in this build" not in text, "every cross-reference resolves"
    assert "The sweep's" in text and "No single logged run" not in text, "the sweep's cost"
    assert "SPEC" not in text and "docs/study.md" in text


@pytest.mark.integration
def test_html_has_contents_captions_and_links_that_resolve(built):
    html = built[0].read_text(encoding="utf-8")
    ids = set(re.findall(r'\sid="([^"]+)"', html))
    links = re.findall(r'href="#([^"]+)"', html)
    assert {"contents", "sec-missed", "tab-grid", "fig-stability-map"} <= ids
    assert links and all(target in ids for target in links), set(links) - ids
    figures = re.findall(r'<figure class="report-figure".*?</figure>', html, re.DOTALL)
    images = re.findall(r"<img [^>]*src=\"data:image/png", html)
    assert len(figures) == len(images) >= 8, "every figure is numbered and captioned"
    for k, fig in enumerate(figures, 1):
        assert f'<span class="caption-number">Figure {k}.</span>' in fig
        assert re.search(rf'alt="Figure {k}\. \w', fig), "the alt text is the caption"
    assert "No description has been provided" not in html
    assert "file://" not in html and "/work/" not in html.split("<script")[0]


@pytest.mark.integration
def test_html_is_self_contained(built):
    html = built[0].read_text(encoding="utf-8")
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', html)
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) >= 8
    assert all(src.startswith("data:image/") for src in images)
    assert "window.MathJax" in html


def text_outside_pages(reader) -> list[str]:
    """Pieces of text of a PDF that start outside their page's box."""
    outside = []
    for number, page in enumerate(reader.pages, 1):
        width, height = float(page.mediabox.width), float(page.mediabox.height)

        def visit(text, cm, tm, font, size, number=number, width=width, height=height):
            x = tm[4] * cm[0] + tm[5] * cm[2] + cm[4]
            y = tm[4] * cm[1] + tm[5] * cm[3] + cm[5]
            if text.strip() and not (0 <= x < width and 0 <= y <= height):
                outside.append(f"page {number}: {text.strip()[:40]!r} at ({x:.0f}, {y:.0f})")

        page.extract_text(visitor_text=visit)
    return outside


@pytest.mark.integration
def test_pdf_pages_captions_bookmarks_and_nothing_cut_off(built):
    from pypdf import PdfReader

    reader = PdfReader(built[1])
    assert len(reader.pages) >= 6
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    for section in ("Task 1", "Task 3", "Task 6", "Appendix", "Contents"):
        assert section in flat
    assert "diverged at" in flat and "final test" in flat
    for tex in ("\\frac", "$$", "\\lambda", "\\max", "\\eta", "$X"):
        assert tex not in text, tex
    html_figures = built[0].read_text(encoding="utf-8").count('<figure class="report-figure"')
    for k in range(1, html_figures + 1):
        assert f"Figure {k}." in flat, f"the caption of Figure {k}"
    assert "Table 1." in flat and "NaN" not in flat and "<NA>" not in flat
    assert text_outside_pages(reader) == []
    record = json.loads((built[1].parent / "report.json").read_text())
    assert record["cut_off"] == [], "no text or image reaches past a page's edge"
    assert record["proofread"] == [], "no empty header, other build's name or e-notation"
    bookmarks = flat_outline(reader.outline)
    assert "1 Task 1 — the data" in bookmarks and "What the study missed" in " ".join(bookmarks)
    raw = built[1].read_bytes()
    assert b"file://" not in raw and b"/work/" not in raw, "no absolute link or path"


def flat_outline(outline) -> list[str]:
    """Every bookmark title of a pypdf outline (nested lists flattened)."""
    titles = []
    for item in outline:
        titles += flat_outline(item) if isinstance(item, list) else [item["/Title"]]
    return titles


@pytest.mark.integration
@pytest.mark.browser
def test_report_in_headless_chromium(built, tmp_path):
    """Every figure loads and has a numbered caption, MathJax typesets, the contents' links
    reach their sections, no table cell shows NaN or <NA>, the console stays clean; a
    screenshot of each section is kept."""
    from playwright.sync_api import sync_playwright

    messages = []
    shots = tmp_path / "sections"
    shots.mkdir()
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium(), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: messages.append(f"requestfailed: {r.url}"))
            page.goto(built[0].resolve().as_uri(), wait_until="load")
            page.wait_for_function(
                "() => window.MathJax && MathJax.startup && MathJax.startup.promise",
                timeout=30_000,
            )
            page.evaluate("() => MathJax.startup.promise")
            images = page.evaluate(
                "() => Array.from(document.images).map(i => [i.complete, i.naturalWidth])"
            )
            formulas = page.evaluate("() => document.querySelectorAll('mjx-container').length")
            tex_errors = page.evaluate("() => document.querySelectorAll('mjx-merror').length")
            captions = page.evaluate(
                """() => Array.from(document.querySelectorAll('figure.report-figure'))
                       .map(f => [f.querySelector('img') !== null,
                                  (f.querySelector('figcaption') || {}).innerText || ''])"""
            )
            cells = page.evaluate(
                "() => Array.from(document.querySelectorAll('figure.report-table td, "
                "figure.report-table th')).map(c => c.innerText)"
            )
            toc = page.evaluate(
                "() => Array.from(document.querySelectorAll('nav.report-contents a'))"
                ".map(a => a.getAttribute('href'))"
            )
            sections = page.evaluate(
                "() => Array.from(document.querySelectorAll('nav.report-contents > ul > li > a'))"
                ".map(a => a.getAttribute('href'))"
            )
            for href in toc:
                page.evaluate("() => window.scrollTo(0, 0)")
                page.click(f"nav.report-contents a[href='{href}']")
                top = page.evaluate(
                    "id => document.getElementById(id).getBoundingClientRect().top", href[1:]
                )
                assert abs(top) < 5, f"{href} does not scroll to its section"
                if href in sections:
                    page.screenshot(
                        path=str(shots / f"{len(list(shots.iterdir())):02d}-{href[1:]}.png")
                    )
            page.screenshot(path=str(tmp_path / "report-screenshot.png"), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 8
    assert all(complete and width > 0 for complete, width in images), images
    assert formulas >= 10 and tex_errors == 0
    assert len(captions) >= 8
    for k, (has_image, caption) in enumerate(captions, 1):
        assert has_image and caption.startswith(f"Figure {k}. ") and len(caption) > 20
    assert len(cells) > 100
    assert not [c for c in cells if re.search(r"\bNaN\b|<NA>|\bnan\b", c)]
    assert len(toc) >= 30 and len(list(shots.iterdir())) == len(sections) >= 9
    assert [m for m in messages if m.startswith(("error", "pageerror", "requestfailed"))] == []
    keep = REPORTS / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(tmp_path / "report-screenshot.png", keep)
    shutil.copytree(shots, REPORTS / "report-sections", dirs_exist_ok=True)


def chromium() -> str:
    """The installed Chromium or Chrome (``make test`` installs it: tools/system-packages)."""
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if path := shutil.which(name):
            return path
    pytest.fail("no Chromium: run `bash tools/system-packages` (or apt-get install -y chromium)")


def _executed(directory: Path, stem: str, heading: str, *, failed: bool = False) -> None:
    params = new_code_cell("profile = 'small'")
    params.metadata["tags"] = ["parameters"]
    injected = new_code_cell("profile = None")
    injected.metadata["tags"] = ["injected-parameters"]
    cells = [new_markdown_cell(f"# {heading}\n\n## Part"), params, injected, new_code_cell("1 + 1")]
    suffix = ".failed.ipynb" if failed else ".ipynb"
    nbformat.write(new_notebook(cells=cells), directory / f"{stem}{suffix}")


def test_assembly_keeps_story_cells_demotes_headings_and_shows_failed_and_missing_notebooks(
    tmp_path,
):
    _executed(tmp_path, "01_a", "First")
    _executed(tmp_path, "02_b", "Second", failed=True)
    nb = assemble(["01_a", "02_b", "03_c"], tmp_path, dataset="fashion-mnist", profile="small")
    sources = [cell.source for cell in nb.cells]
    assert sources[0].startswith("# How batch size, learning rate and data size shape")
    assert sources[0].endswith("a linear Fashion-MNIST classifier (small profile)")
    assert sources[1].startswith('<h2 class="contents-title" id="contents">Contents</h2>')
    assert ">1</span> First</a>" in sources[1]
    text = re.sub(r"<[^>]+>", "", "\n".join(sources[2:]))
    assert [line for line in text.splitlines() if re.match(r"\d[\d.]* [A-Z0-9]", line)] == [
        "1 First",
        "1.1 Part",
        "2 Second",
        "2.1 Part",
        "3 03_c",
    ]
    assert sources.count("1 + 1") == 2
    assert not any("profile = " in s for s in sources[1:])
    assert sources[-1].endswith("03_c</h2>\n\n\nThis notebook was not executed.")
    assert ">3</span> 03_c</h2>" in sources[-1]


def test_the_full_build_names_no_profile_in_its_title(tmp_path):
    nb = assemble([], tmp_path, dataset="mnist", profile=None)
    assert nb.cells[0].source == f"# {report_title('mnist', None)}"
    assert report_title("mnist", None).endswith("a linear MNIST classifier")


def test_a_profile_name_in_the_title_is_shown_literally():
    assert report_title("mnist", "a*b_c").endswith("(a*b_c profile)")
    assert report_title("mnist", "a*b_c", markdown=True).endswith("(a\\*b\\_c profile)")
