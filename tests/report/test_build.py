"""The report: the small build made by the real code path, read back as HTML, in a browser,
as PDF; and its assembly from executed notebooks."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from linmnist.cli import report_main
from linmnist.experiments.paths import REPORTS, build_dir
from linmnist.report.build import assemble

SECTIONS = (
    "Task 1 — the data",
    "Task 2 — baseline SGD: learning rate 0.001, batch size 100",
    "Tasks 3 and 4 — learning rate × batch size",
    "Task 4 — the role of the batch size",
    "Task 5 — the training-set size N'",
    "Task 6 — the same model in numpy, PyTorch and Keras",
    "The stability map — learning rate × batch size, and where SGD diverges",
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
def built():
    """The small build's report, made (or found up to date) by ``python -m linmnist report``."""
    assert report_main(["--profile", "small", "--jobs", "2", "--no-progress"]) == 0
    build = build_dir("mnist", "small")
    return build / "report.html", build / "report.pdf"


@pytest.mark.integration
def test_html_has_the_title_every_section_in_order_and_says_it_is_a_small_build(built):
    page = parse(built[0])
    assert page.headings[0].endswith("(small profile)")
    order = [page.headings.index(section) for section in SECTIONS]
    assert order == sorted(order)
    text = " ".join(" ".join(page.text).split())
    assert "This is a build of the small profile" in text
    assert "Traceback" not in text and "MissingResults" not in text


@pytest.mark.integration
def test_html_is_self_contained(built):
    html = built[0].read_text(encoding="utf-8")
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', html)
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) >= 8
    assert all(src.startswith("data:image/") for src in images)
    assert "window.MathJax" in html


@pytest.mark.integration
def test_pdf_pages_table_text_and_no_raw_tex(built):
    from pypdf import PdfReader

    reader = PdfReader(built[1])
    assert len(reader.pages) >= 6
    text = "\n".join(page.extract_text() for page in reader.pages)
    flat = " ".join(text.split())
    for section in ("Task 1", "Task 3", "Task 6", "Appendix"):
        assert section in flat
    assert "diverged at" in flat and "final test" in flat
    for tex in ("\\frac", "$$", "\\lambda", "\\max", "\\eta", "$X"):
        assert tex not in text, tex


@pytest.mark.integration
@pytest.mark.browser
def test_report_in_headless_chromium(built, tmp_path):
    """Every figure loads, MathJax typesets, the console stays clean; a screenshot is kept."""
    from playwright.sync_api import sync_playwright

    messages = []
    shot = tmp_path / "report-screenshot.png"
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
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert len(images) >= 8
    assert all(complete and width > 0 for complete, width in images), images
    assert formulas >= 10 and tex_errors == 0
    assert [m for m in messages if m.startswith(("error", "pageerror", "requestfailed"))] == []
    keep = REPORTS / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)


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
    assert sources[0].startswith("# linmnist — a linear Fashion-MNIST classifier")
    assert "(small profile)" in sources[0].splitlines()[0]
    assert "## First\n\n### Part" in sources and "## Second\n\n### Part" in sources
    assert sources.count("1 + 1") == 2
    assert not any("profile" in s for s in sources[1:])
    assert sources[-1] == "## 03_c\n\nThis notebook was not executed."


def test_the_full_build_names_no_profile_in_its_title(tmp_path):
    nb = assemble([], tmp_path, dataset="mnist", profile=None)
    title = nb.cells[0].source.splitlines()[0]
    assert title == "# linmnist — a linear MNIST classifier trained by minibatch SGD"
    assert "This is a build of" not in nb.cells[0].source
