"""``python -m linmnist report``: run the grids, execute the report notebook, write HTML and PDF.

``build`` runs every grid cell through ``linmnist.experiments.runner.run`` (incremental and
parallel),
executes ``notebooks/07_report.ipynb`` with papermill into ``<out>/report.ipynb`` (the report
notebook reads the cell results from ``<out>/runs`` or ``<out>/runs-<profile>``, and executes
the framework notebook into ``<runs>/frameworks/``), renders every executed cell notebook
to HTML beside it, then writes ``<out>/report.html`` (self-contained, MathJax inlined, code
hidden unless asked) and ``<out>/report.pdf`` (WeasyPrint, mathematics pre-rendered). A
failed cell or a failing report cell does not stop the build: the report shows it, and the
exit code is 1.

The module also holds what the report notebook's appendix shows (``environment``,
``machine``, ``git_commit``, ``notebook_links``), ``run_grids`` and ``run_frameworks`` for
the notebooks, and ``execute_notebook``.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
import warnings
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

import pandas as pd

from linmnist.report import render

ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS = ROOT / "notebooks"
REPORT_NOTEBOOK = NOTEBOOKS / "07_report.ipynb"
FRAMEWORKS_NOTEBOOK = NOTEBOOKS / "06_frameworks.ipynb"
STABILITY_NOTEBOOK = NOTEBOOKS / "08_stability.ipynb"
KERNEL_NAME = "linmnist"
MATHJAX_COPY = "tex-svg.js"
RUNNER_LOG = "runner.log"
# Parameters of notebooks/06_frameworks.ipynb per grid profile (no profile: its defaults).
FRAMEWORKS_PARAMETERS: dict[str, dict[str, Any]] = {
    "small": {"iterations": 100, "eval_every": 10, "study_iterations": 100, "study_eval_every": 10}
}
PACKAGES = (
    "linmnist",
    "numpy",
    "pandas",
    "matplotlib",
    "torch",
    "keras",
    "papermill",
    "nbconvert",
    "nbformat",
    "ipykernel",
    "weasyprint",
    "django-static-mathjax",
)


@dataclass
class BuildResult:
    """What ``build`` produced.

    Attributes
    ----------
    html, pdf, notebook : Path
        The report page, its PDF and the executed report notebook.
    pages : int
        Pages of the PDF.
    failed : list of str
        "task/cell: error" for every failed grid cell, and "report: error" when a cell of
        the report notebook failed.
    wall_seconds : float
        Wall time of the whole build.
    """

    html: Path
    pdf: Path
    notebook: Path
    pages: int
    failed: list[str] = field(default_factory=list)
    wall_seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no grid cell and no report cell failed."""
        return not self.failed


def default_out(dataset: str = "mnist") -> Path:
    """Default report directory: ``reports`` for MNIST, ``reports/<dataset>`` for another
    dataset (so its report never replaces MNIST's)."""
    from linmnist.engine.data import DATASETS

    if dataset not in DATASETS:
        raise ValueError(f"dataset must be one of {', '.join(DATASETS)}; got {dataset!r}")
    reports = ROOT / "reports"
    return reports if dataset == "mnist" else reports / dataset


def default_runs_dir(profile: str | None = None, dataset: str = "mnist") -> Path:
    """Default results directory: ``<default_out(dataset)>/runs``, or ``.../runs-<profile>``."""
    return default_out(dataset) / ("runs" if profile is None else f"runs-{profile}")


@contextlib.contextmanager
def _stderr_to(path: Path) -> Iterator[None]:
    """Send stderr to ``path``: file descriptor 2 (inherited by children) and ``sys.stderr``,
    which in a notebook's kernel is not file descriptor 2."""
    from linmnist.experiments.runner import stderr_to

    with (
        stderr_to(path),
        open(path, "a", encoding="utf-8") as text,
        contextlib.redirect_stderr(text),
    ):
        yield


def run_grids(
    tasks: Iterable[str] = ("grid", "subset"),
    *,
    runs_dir: str | os.PathLike | None = None,
    profile: str | None = None,
    **options: Any,
):
    """``linmnist.experiments.runner.run`` for a notebook: no progress bar, the cell kernels'
    messages
    appended to ``<runs_dir>/runner.log`` instead of the notebook's output.

    Parameters
    ----------
    tasks : iterable of str
        The tasks to bring up to date.
    runs_dir : path, optional
        ``default_runs_dir(profile, dataset)`` by default.
    profile : str, optional
        A profile of the configuration.
    **options
        Passed to ``linmnist.experiments.runner.run`` (jobs, config, dataset, force).

    Returns
    -------
    linmnist.experiments.runner.RunSummary
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        from linmnist.experiments import runner

    if runs_dir is None:
        runs_dir = default_runs_dir(profile, options.get("dataset", "mnist"))
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    with _stderr_to(runs_dir / RUNNER_LOG):
        return runner.run(tasks, runs_dir=runs_dir, profile=profile, progress=False, **options)


def execute_notebook(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    parameters: dict[str, Any] | None = None,
    cwd: str | os.PathLike | None = None,
) -> str | None:
    """Execute a notebook with papermill (kernel ``linmnist``) into ``target``, atomically.

    The executed notebook is written even when a cell fails (papermill marks the failing
    cell); the error is returned instead of raised.

    Returns
    -------
    str or None
        The error message of the failing cell, None when every cell ran.
    """
    import papermill
    from papermill.exceptions import PapermillExecutionError

    source, target = Path(source), Path(target)
    if not source.is_file():
        raise ValueError(f"source must be an existing notebook, got {str(source)!r}")
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.stem}.", suffix=".ipynb")
    os.close(fd)
    error = None
    try:
        try:
            papermill.execute_notebook(
                str(source),
                tmp,
                parameters=parameters or {},
                kernel_name=KERNEL_NAME,
                cwd=str(cwd if cwd is not None else source.parent),
                progress_bar=False,
            )
        except PapermillExecutionError as exc:
            error = f"{exc.ename}: {exc.evalue}"
        render.atomic_write(target, Path(tmp).read_bytes())
    finally:
        Path(tmp).unlink(missing_ok=True)
    return error


@dataclass(frozen=True)
class NotebookRun:
    """An executed notebook.

    Attributes
    ----------
    path : Path
        The executed notebook (``*.failed.ipynb`` when a cell failed).
    error : str or None
        The failing cell's error.
    skipped : bool
        True when an up-to-date execution was reused.
    """

    path: Path
    error: str | None
    skipped: bool


def run_frameworks(
    runs_dir: str | os.PathLike,
    *,
    profile: str | None = None,
    dataset: str = "mnist",
    parameters: dict[str, Any] | None = None,
) -> NotebookRun:
    """Execute ``notebooks/06_frameworks.ipynb`` into ``<runs_dir>/frameworks/`` unless up to date.

    The parameters are ``FRAMEWORKS_PARAMETERS[profile]`` (the notebook's defaults without
    a profile), updated by ``parameters``, plus ``dataset``. An execution is reused when the
    notebook's source, the parameters, the package version and the data checksum are
    unchanged (their SHA-256 is kept in the executed notebook's metadata).
    """
    import nbformat

    from linmnist import __version__
    from linmnist.engine.data import dataset_checksum
    from linmnist.experiments.runner import notebook_digest

    params = {**FRAMEWORKS_PARAMETERS.get(profile or "", {}), **(parameters or {})}
    params["dataset"] = dataset
    payload = {
        "notebook": notebook_digest(FRAMEWORKS_NOTEBOOK),
        "params": params,
        "version": __version__,
        "dataset_checksum": dataset_checksum(dataset),
    }
    fingerprint = hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()
    directory = Path(runs_dir) / "frameworks"
    target = directory / FRAMEWORKS_NOTEBOOK.name
    failed = target.with_suffix(".failed.ipynb")
    if target.is_file():
        stored = nbformat.read(target, as_version=4).metadata.get("linmnist", {})
        if stored.get("fingerprint") == fingerprint:
            return NotebookRun(target, None, True)
    with _stderr_to(_log_path(directory)):
        error = execute_notebook(FRAMEWORKS_NOTEBOOK, failed, parameters=params)
    if error is not None:
        target.unlink(missing_ok=True)
        return NotebookRun(failed, error, False)
    nb = nbformat.read(failed, as_version=4)
    nb.metadata["linmnist"] = {"fingerprint": fingerprint}
    render.atomic_write(target, nbformat.writes(nb))
    failed.unlink()
    return NotebookRun(target, None, False)


@dataclass(frozen=True)
class SweepState:
    """How much of the stability sweep has up-to-date results in a results directory.

    Attributes
    ----------
    done, cells : int
        Cells with an up-to-date ok record, and cells in the configuration.
    """

    done: int
    cells: int

    @property
    def complete(self) -> bool:
        """True when every cell of the sweep is up to date (and there is at least one)."""
        return self.cells > 0 and self.done == self.cells


def sweep_state(
    runs_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    profile: str | None = None,
    dataset: str = "mnist",
) -> SweepState:
    """Count the stability sweep's cells whose results under ``runs_dir`` are up to date.

    A cell is up to date when its JSON record has status ok and the fingerprint the runner
    would give it now (notebook source, parameters, package version, data checksum).
    """
    from linmnist.engine.data import dataset_checksum
    from linmnist.experiments.grids import load_grids
    from linmnist.experiments.results import json_path, read_record
    from linmnist.experiments.runner import fingerprint

    cells = load_grids(config, profile=profile).get("stability", [])
    checksum = dataset_checksum(dataset)
    done = 0
    for cell in cells:
        path = json_path(Path(runs_dir) / cell.task, cell.name)
        try:
            record = read_record(path)
        except (OSError, ValueError):
            continue
        expected = fingerprint(cell, dataset=dataset, checksum=checksum)
        done += record.get("status") == "ok" and record.get("fingerprint") == expected
    return SweepState(done, len(cells))


def run_stability(
    runs_dir: str | os.PathLike,
    *,
    config: str | os.PathLike | None = None,
    profile: str | None = None,
    dataset: str = "mnist",
    jobs: int = 1,
    sweep: bool = False,
) -> NotebookRun | SweepState:
    """Execute ``notebooks/08_stability.ipynb`` into ``<runs_dir>/stability_map/`` for the report.

    With ``sweep`` the notebook first runs the sweep's missing cells (``jobs`` at a time);
    without it, the notebook runs only when every cell already has up-to-date results
    (``python -m linmnist run --task stability``, ``make sweep``), and the ``SweepState``
    is returned otherwise, so the report can say what is missing.
    """
    state = sweep_state(runs_dir, config=config, profile=profile, dataset=dataset)
    if not (sweep or state.complete):
        return state
    directory = Path(runs_dir) / "stability_map"
    target = directory / STABILITY_NOTEBOOK.name
    failed = target.with_suffix(".failed.ipynb")
    params = {
        "dataset": dataset,
        "runs_dir": str(Path(runs_dir).resolve()),
        "config": None if config is None else str(Path(config).resolve()),
        "profile": profile,
        "jobs": jobs,
    }
    with _stderr_to(_log_path(directory)):
        error = execute_notebook(STABILITY_NOTEBOOK, failed, parameters=params)
    if error is not None:
        target.unlink(missing_ok=True)
        return NotebookRun(failed, error, False)
    os.replace(failed, target)
    return NotebookRun(target, None, False)


def sweep_note(state: SweepState, *, runs_dir: str | os.PathLike, dataset: str = "mnist") -> str:
    """Markdown saying that the stability sweep's results are missing and how to compute them."""
    runs_dir = Path(runs_dir).resolve()
    if runs_dir.is_relative_to(ROOT):
        runs_dir = runs_dir.relative_to(ROOT)
    command = f"python -m linmnist run --task stability --jobs 2 --runs-dir {runs_dir}"
    if dataset != "mnist":
        command += f" --dataset {dataset}"
    make = "make sweep" if dataset == "mnist" else f"make sweep DATASET={dataset}"
    return (
        f"**No stability map in this build**: {state.done} of the sweep's {state.cells} "
        "configurations have up-to-date results in this report's results directory. The "
        "sweep is computed apart because it takes longer than the rest of the report: run "
        f"`{make}` (that is, `{command}`), then build the report again; or build with "
        "`python -m linmnist report --sweep`, which runs the sweep first."
    )


def _log_path(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    return directory.parent / RUNNER_LOG


def environment() -> pd.DataFrame:
    """Python and the versions of the packages the report depends on (missing ones marked)."""
    rows = [{"package": "python", "version": platform.python_version()}]
    for name in PACKAGES:
        try:
            version = metadata.version(name)
        except metadata.PackageNotFoundError:
            version = "not installed"
        rows.append({"package": name, "version": version})
    return pd.DataFrame(rows)


def machine() -> dict[str, str]:
    """The machine: OS, processor model, cores available, memory."""
    cpu = platform.processor() or platform.machine()
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.is_file():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    info = {"system": platform.platform(), "processor": cpu, "cores": str(cores)}
    meminfo = Path("/proc/meminfo")
    if meminfo.is_file():
        total = meminfo.read_text().split("MemTotal:", 1)[1].split()[0]
        info["memory"] = f"{int(total) / 2**20:.1f} GiB"
    return info


def git_commit(root: str | os.PathLike = ROOT) -> str:
    """The commit of the working tree, marked "(modified)" when it has uncommitted changes."""
    try:
        head = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown (not a git checkout)"
    return f"{head} (modified)" if dirty else head


def notebook_links(runs_dir: str | os.PathLike, report_dir: str | os.PathLike) -> pd.DataFrame:
    """The executed cell notebooks under ``runs_dir`` and the relative links of their HTML.

    Returns
    -------
    DataFrame
        Columns task, cell, status ("ok" or "failed", from the file name), href (the
        ``.html`` beside the notebook, relative to ``report_dir``), sorted by task and cell.
    """
    runs_dir, report_dir = Path(runs_dir), Path(report_dir)
    rows = []
    for path in sorted(runs_dir.glob("*/*.ipynb")):
        if path.name.startswith("."):
            continue
        failed = path.name.endswith(".failed.ipynb")
        cell = path.name.removesuffix(".failed.ipynb").removesuffix(".ipynb")
        href = os.path.relpath(path.with_suffix(".html"), report_dir)
        rows.append(
            {
                "task": path.parent.name,
                "cell": cell,
                "status": "failed" if failed else "ok",
                "href": Path(href).as_posix(),
            }
        )
    return pd.DataFrame(rows, columns=["task", "cell", "status", "href"])


def links_markdown(links: pd.DataFrame) -> str:
    """A Markdown list of ``notebook_links(...)``, one line per task."""
    if links.empty:
        return "No executed cell notebook was found."
    lines = []
    for task, rows in links.groupby("task", sort=True):
        items = [
            f"[{row.cell}{' (failed)' if row.status == 'failed' else ''}]({row.href})"
            for row in rows.itertuples()
        ]
        lines.append(f"- **{task}**: " + ", ".join(items))
    return "\n".join(lines)


def render_cell_notebooks(runs_dir: str | os.PathLike) -> list[Path]:
    """Render every executed notebook under ``runs_dir`` to HTML beside it (code included).

    The pages share one copy of MathJax (``runs_dir/tex-svg.js``). A page newer than its
    notebook is kept.
    """
    runs_dir = Path(runs_dir)
    runs_dir.mkdir(parents=True, exist_ok=True)
    script = runs_dir / MATHJAX_COPY
    if not script.is_file():
        render.atomic_write(script, render.mathjax_script())
    pages = []
    for path in sorted(runs_dir.glob("*/*.ipynb")):
        if path.name.startswith("."):
            continue
        page = path.with_suffix(".html")
        if not page.is_file() or page.stat().st_mtime < path.stat().st_mtime:
            src = os.path.relpath(script, page.parent)
            html = render.notebook_html(path, include_code=True, mathjax_src=src)
            render.atomic_write(page, html)
        pages.append(page)
    return pages


def build(
    *,
    out: str | os.PathLike | None = None,
    jobs: int = 1,
    dataset: str = "mnist",
    config: str | os.PathLike | None = None,
    profile: str | None = None,
    include_code: bool = False,
    progress: bool = True,
    sweep: bool = False,
) -> BuildResult:
    """Run the grids and build ``<out>/report.html`` and ``<out>/report.pdf``.

    Parameters
    ----------
    out : path, optional
        Output directory (``default_out(dataset)`` by default); grid results go to
        ``<out>/runs`` (``<out>/runs-<profile>`` with a profile, so a small build never
        replaces the full results).
    jobs : int
        Grid cells run in parallel.
    dataset : str
        One of ``linmnist.engine.data.DATASETS``.
    config : path, optional
        Grid configuration; ``linmnist/grids.toml`` by default.
    profile : str, optional
        A profile of the configuration (e.g. ``"small"``).
    include_code : bool
        Show the report notebook's code in the HTML and PDF.
    progress : bool
        Show the runner's progress bar.
    sweep : bool
        Run the stability sweep too (its missing cells). Without it the stability section
        shows an existing, up-to-date sweep of ``runs_dir``, or says how to compute one.
    """
    from linmnist.experiments import runner
    from linmnist.experiments.grids import DEFAULT_TASKS
    from linmnist.report.summary import report_title

    start = time.time()
    out = default_out(dataset) if out is None else Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs_dir = (out / default_runs_dir(profile).name).resolve()  # the kernels run elsewhere
    summary = runner.run(
        tasks=[*DEFAULT_TASKS, "stability"] if sweep else None,
        jobs=jobs,
        config=config,
        profile=profile,
        runs_dir=runs_dir,
        dataset=dataset,
        progress=progress,
    )
    failed = [f"{o.task}/{o.cell}: {o.error}" for o in summary.failed]
    summary_tasks = {o.task for o in summary.outcomes}
    notebook = out / "report.ipynb"
    parameters = {
        "dataset": dataset,
        "runs_dir": str(runs_dir),
        "config": None if config is None else str(Path(config).resolve()),
        "profile": profile,
        "jobs": jobs,
        "sweep": sweep,
        "report_dir": str(out.resolve()),
        "started": start,
    }
    error = execute_notebook(REPORT_NOTEBOOK, notebook, parameters=parameters)
    links = notebook_links(runs_dir, out)
    failed += [
        f"{row.task}/{row.cell}"
        for row in links[links["status"] == "failed"].itertuples()
        if row.task not in summary_tasks
    ]
    if error is not None:
        failed.append(f"report: {error}")
    render_cell_notebooks(runs_dir)
    title = report_title(dataset)
    html = out / "report.html"
    render.atomic_write(
        html, render.notebook_html(notebook, include_code=include_code, title=title)
    )
    pdf = out / "report.pdf"
    unrendered: list[str] = []
    page = render.print_html(notebook, include_code=include_code, title=title, failures=unrendered)
    for problem in unrendered:
        print(f"warning: the PDF shows a formula as code: {problem}", file=sys.stderr)
    pages = render.write_pdf(page, pdf, base_url=str(out.resolve()))
    return BuildResult(
        html=html,
        pdf=pdf,
        notebook=notebook,
        pages=pages,
        failed=failed,
        wall_seconds=time.time() - start,
    )


def main(argv: list[str] | None = None) -> int:
    """``python -m linmnist report``; 0 when everything ran, 1 when a cell failed, 2 on a usage
    error, 130 when interrupted."""
    parser = argparse.ArgumentParser(
        prog="python -m linmnist report",
        description=(
            "Run the grids and build report.html and report.pdf in reports/ "
            "(reports/<dataset>/ for a dataset other than MNIST)."
        ),
    )
    parser.add_argument("--jobs", type=int, default=1, help="grid cells run in parallel")
    parser.add_argument("--dataset", default="mnist", help="mnist (default) or fashion-mnist")
    parser.add_argument(
        "--config", type=Path, help="grid configuration (default: linmnist/grids.toml)"
    )
    parser.add_argument("--profile", help="a profile of the configuration, e.g. small")
    parser.add_argument("--include-code", action="store_true", help="show the code in the report")
    parser.add_argument(
        "--out", type=Path, help="output directory (default reports, or reports/<dataset>)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--sweep",
        action="store_true",
        help="run the stability sweep too (otherwise an existing one is shown)",
    )
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    try:
        result = build(
            out=args.out,
            jobs=args.jobs,
            dataset=args.dataset,
            config=args.config,
            profile=args.profile,
            include_code=args.include_code,
            progress=not args.no_progress,
            sweep=args.sweep,
        )
    except (ValueError, RuntimeError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "interrupted: finished grid cells are kept, the others run next time", file=sys.stderr
        )
        return 130
    for failure in result.failed:
        print(f"FAILED {failure}", file=sys.stderr)
    print(f"wrote {result.html} and {result.pdf} ({result.pages} pages)")
    print(f"total wall time {result.wall_seconds:.1f} s")
    return 0 if result.ok else 1
