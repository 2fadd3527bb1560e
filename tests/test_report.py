"""The report: a small build by the real code path, read back as HTML, in a browser, as PDF."""

import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest

from linmnist.experiments import runner
from linmnist.report import build as report
from linmnist.report import render

SECTIONS = (
    "Task 1 — the data",
    "Task 2 — baseline SGD",
    "Task 3 — learning rate × batch size",
    "Task 4 — the role of the batch size",
    "Task 5 — the training-set size N'",
    "Task 6 — numpy, PyTorch and Keras",
    "The stability map — where SGD diverges",
    "Appendix — reproducibility",
)
TASK3_HEADERS = ("final training loss", "final test accuracy (%)", "seconds per run")
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
def built(tmp_path_factory):
    """One small report (the small profile, two jobs, its stability sweep) by the real code path."""
    out = tmp_path_factory.mktemp("report")
    result = report.build(out=out, profile="small", jobs=2, progress=False, sweep=True)
    return result


@pytest.mark.integration
def test_build_succeeds_and_writes_both_files(built):
    assert built.ok, built.failed
    assert built.html.is_file() and built.pdf.is_file() and built.notebook.is_file()
    assert built.wall_seconds > 0


@pytest.mark.integration
def test_html_has_every_section_in_order_and_the_task3_table(built):
    page = parse(built.html)
    found = [next(i for i, h in enumerate(page.headings) if h == s) for s in SECTIONS]
    assert found == sorted(found), "sections in reading order"
    text = " ".join(page.text)
    for header in TASK3_HEADERS:
        assert header in text
    assert re.search(r"diverged at iteration \d+(-\d+)? \(2 of 2 seeds\)", text)
    assert "Training sample 696 (label 2)" not in text, "figures are images, not text"


@pytest.mark.integration
def test_stability_section_shows_the_executed_sweep(built):
    """With --sweep the report includes notebook 08 on the sweep's results, not the note."""
    page = parse(built.html)
    text = " ".join(" ".join(page.text).split())
    assert "The divergence boundary of each batch size" in page.headings
    assert "Where the study's learning rates sit" in page.headings
    assert "No stability map in this build" not in text
    assert (built.html.parent / "runs-small" / "stability_map" / "08_stability.ipynb").is_file()


@pytest.mark.integration
def test_html_is_self_contained(built):
    html = built.html.read_text(encoding="utf-8")
    assert not re.search(r'<(script|link|img|iframe)[^>]+(src|href)="(https?:)?//', html)
    images = re.findall(r'<img [^>]*src="([^"]+)"', html)
    assert len(images) >= 8
    assert all(src.startswith("data:image/") for src in images)
    assert "window.MathJax" in html


@pytest.mark.integration
def test_appendix_links_every_cell_notebook_as_html(built):
    links = [h for h in parse(built.html).links if h.endswith(".html")]
    runs = sorted(p for p in (built.html.parent / "runs-small").glob("*/*.ipynb"))
    assert len(links) == len(runs) == 4 + 2 + 1 + 4 + 1, "grid, subset, 06, stability, 08"
    for href in links:
        page = built.html.parent / href
        assert page.is_file(), href
        assert "<script src=" in page.read_text(encoding="utf-8")


@pytest.mark.integration
def test_pdf_pages_table_text_and_no_raw_tex(built):
    from pypdf import PdfReader

    reader = PdfReader(built.pdf)
    assert len(reader.pages) == built.pages >= 6
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
        browser = pw.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.on("console", lambda m: messages.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: messages.append(f"pageerror: {e}"))
            page.on("requestfailed", lambda r: messages.append(f"requestfailed: {r.url}"))
            page.goto(built.html.resolve().as_uri(), wait_until="load")
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
    keep = report.ROOT / "reports" / "report-screenshot.png"
    keep.parent.mkdir(exist_ok=True)
    shutil.copyfile(shot, keep)


def test_build_reports_failed_cells_and_still_writes_the_report(tmp_path, monkeypatch):
    """A failed grid cell and a failing report cell give exit code 1 and a report showing them."""
    failed_cell = runner.CellOutcome(
        "grid", "lr0.1_bs1", "failed", "MemoryError: no room", 1.0, tmp_path / "x.json"
    )

    def fake_run(**kwargs):
        assert Path(kwargs["runs_dir"]).is_absolute(), "cell kernels run in another directory"
        return runner.RunSummary(
            (failed_cell,), Path(kwargs["runs_dir"]), "mnist", "0" * 64, 1, 2, 1.0
        )

    def fake_execute(source, target, *, parameters=None, cwd=None):
        nb = nbformat.v4.new_notebook()
        nb.cells = [
            nbformat.v4.new_markdown_cell("## Task 3 — the grid\n\nwith $\\lambda_{\\max}$"),
            nbformat.v4.new_code_cell(
                "boom()",
                outputs=[
                    nbformat.v4.new_output(
                        "error",
                        ename="ValueError",
                        evalue="report cell broke",
                        traceback=["ValueError: report cell broke"],
                    )
                ],
            ),
        ]
        render.atomic_write(target, nbformat.writes(nb))
        return "ValueError: report cell broke"

    monkeypatch.setattr(runner, "run", fake_run)
    monkeypatch.setattr(report, "execute_notebook", fake_execute)
    monkeypatch.chdir(tmp_path)
    result = report.build(out="out", profile="small", progress=False)
    assert not result.ok
    assert result.failed == [
        "grid/lr0.1_bs1: MemoryError: no room",
        "report: ValueError: report cell broke",
    ]
    assert "report cell broke" in result.html.read_text(encoding="utf-8")
    assert result.pdf.read_bytes().startswith(b"%PDF") and result.pages == 1
    monkeypatch.setattr(report, "build", lambda **kw: result)
    assert report.main(["--profile", "small", "--out", "out"]) == 1


def test_main_refuses_wrong_parameters_with_exit_code_2(capsys, tmp_path):
    out = ["--out", str(tmp_path)]
    assert report.main(["--jobs", "0", "--profile", "small", *out]) == 2
    assert "jobs" in capsys.readouterr().err
    assert report.main(["--profile", "tiny", *out]) == 2
    assert "profile" in capsys.readouterr().err
    assert report.main(["--bogus"]) == 2


def test_notebook_links_are_relative_and_mark_failures(tmp_path):
    for name in ("grid/lr0.1_bs1.ipynb", "grid/lr0.01_bs1.failed.ipynb", "subset/.n1.tmp.ipynb"):
        (tmp_path / "runs" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "runs" / name).write_text("{}")
    links = report.notebook_links(tmp_path / "runs", tmp_path)
    assert links.to_dict("records") == [
        {
            "task": "grid",
            "cell": "lr0.01_bs1",
            "status": "failed",
            "href": "runs/grid/lr0.01_bs1.failed.html",
        },
        {"task": "grid", "cell": "lr0.1_bs1", "status": "ok", "href": "runs/grid/lr0.1_bs1.html"},
    ]
    text = report.links_markdown(links)
    assert text == (
        "- **grid**: [lr0.01_bs1 (failed)](runs/grid/lr0.01_bs1.failed.html), "
        "[lr0.1_bs1](runs/grid/lr0.1_bs1.html)"
    )


def test_environment_lists_python_and_packages():
    env = report.environment().set_index("package")["version"]
    assert env["python"].count(".") == 2
    assert env["numpy"] != "not installed"
    assert set(report.PACKAGES) <= set(env.index)


def test_machine_and_commit():
    info = report.machine()
    assert int(info["cores"]) >= 1 and info["processor"]
    assert re.fullmatch(
        r"[0-9a-f]{40}( \(modified\))?|unknown \(not a git checkout\)", report.git_commit()
    )


FASHION_FILES = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module")
def fashion(tmp_path_factory):
    """One small Fashion-MNIST report built by the real code path (``--dataset fashion-mnist``)."""
    if not FASHION_FILES.is_dir():
        pytest.skip(f"Fashion-MNIST is not installed ({FASHION_FILES}: apt dataset-fashion-mnist)")
    out = tmp_path_factory.mktemp("fashion")
    return report.build(out=out, profile="small", jobs=2, dataset="fashion-mnist", progress=False)


@pytest.mark.integration
def test_fashion_report_names_its_dataset_and_computes_its_own_optimum(fashion):
    """The Fashion-MNIST report is a complete report of its own: HTML, PDF, its own numbers."""
    from pypdf import PdfReader

    from linmnist.engine.analysis import least_squares
    from linmnist.engine.data import load_mnist, prepare

    assert fashion.ok, fashion.failed
    assert fashion.html.is_file() and fashion.pdf.is_file()
    page = parse(fashion.html)
    text = " ".join(" ".join(page.text).split())
    assert "<title>linmnist — a linear Fashion-MNIST classifier" in fashion.html.read_text("utf-8")
    assert (
        page.headings[0] == "linmnist — a linear Fashion-MNIST classifier trained by minibatch SGD"
    )
    assert "This report is on Fashion-MNIST" in text
    found = [next(i for i, h in enumerate(page.headings) if h == s) for s in SECTIONS]
    assert found == sorted(found)
    (x, y), (xt, yt) = load_mnist("fashion-mnist")
    optimum = least_squares(*prepare(x, y), *prepare(xt, yt))
    assert f"closed-form optimum: training loss {optimum.loss:.4f}" in text
    assert "0.1955" not in text, "MNIST's optimum is not Fashion-MNIST's"
    for study in ("study: test accuracy at iteration 800", "same as the study", "82.14 %"):
        assert study not in text, study
    assert "has no individually known labels" in text
    assert "No stability map in this build" in text
    assert "0 of the sweep's 4 configurations have up-to-date results" in text
    assert "make sweep DATASET=fashion-mnist" in text
    pdf = " ".join("\n".join(p.extract_text() for p in PdfReader(fashion.pdf).pages).split())
    assert "Fashion-MNIST" in pdf and "Appendix" in pdf
    assert fashion.pages >= 6


def test_default_out_keeps_other_datasets_apart_from_mnist():
    assert report.default_out() == report.ROOT / "reports"
    assert report.default_out("fashion-mnist") == report.ROOT / "reports" / "fashion-mnist"
    assert report.default_runs_dir("small", "fashion-mnist") == (
        report.ROOT / "reports" / "fashion-mnist" / "runs-small"
    )
    with pytest.raises(ValueError, match="dataset must be one of"):
        report.default_out("cifar10")


def test_sweep_state_counts_only_up_to_date_ok_records(tmp_path):
    """A cell counts when its record is ok with the fingerprint the runner would give it now."""
    from linmnist.engine.data import dataset_checksum
    from linmnist.experiments.grids import load_grids
    from linmnist.experiments.results import json_path, write_record

    state = report.sweep_state(tmp_path, profile="small")
    assert (state.done, state.cells, state.complete) == (0, 4, False)
    cells = load_grids(profile="small")["stability"]
    checksum = dataset_checksum("mnist")
    (tmp_path / "stability").mkdir()
    for i, cell in enumerate(cells):
        good = runner.fingerprint(cell, dataset="mnist", checksum=checksum)
        record = {"task": "stability", "cell": cell.name, "status": "ok", "fingerprint": good}
        if i == 1:
            record["fingerprint"] = "stale"
        if i == 2:
            record["status"] = "failed"
        write_record(json_path(tmp_path / "stability", cell.name), record)
    assert report.sweep_state(tmp_path, profile="small").done == 2
    missing = report.run_stability(tmp_path, profile="small")
    assert missing == report.SweepState(2, 4), "nothing is executed without a complete sweep"
    note = report.sweep_note(missing, runs_dir=tmp_path, dataset="fashion-mnist")
    assert "2 of the sweep's 4 configurations" in note
    assert "make sweep DATASET=fashion-mnist" in note and "--dataset fashion-mnist" in note
    inside = report.sweep_note(missing, runs_dir=report.default_runs_dir(), dataset="mnist")
    assert "--runs-dir reports/runs`" in inside, "a path in the repository is shown relative"
