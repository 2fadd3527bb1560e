"""The whole pipeline of one build, in dependency order: the experiment products, one executed
copy per task notebook (``notebooks/<stem>``, upstream: ``NOTEBOOKS_READ``) and the report.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from linmnist.engine.data import DATASETS, FACTS
from linmnist.engine.validation import check_choice
from linmnist.experiments.comparison import comparison_product
from linmnist.experiments.grids import check_n_train, load_grids
from linmnist.experiments.paths import NOTEBOOKS, ROOT, build_dir, notebooks_dir, relative_to_root
from linmnist.experiments.products import Product, experiment_products
from linmnist.experiments.scaling import scaling_products
from linmnist.experiments.sizes import sizes_products
from linmnist.experiments.theory import theory_products

NOTEBOOK_JOB = "linmnist.experiments.notebooks:notebook_job"
REPORT_JOB = "linmnist.report.build:report_job"
# The groups of experiment products, every one of which the summary and the appendix read.
EVERY_GROUP = ("grid", "subset", "stability", "edge", "frameworks", "scaling", "theory", "sizes")
# The task notebooks in reading order, each with the groups of products it reads.
NOTEBOOKS_READ: dict[str, tuple[str, ...]] = {
    "00_summary": EVERY_GROUP,
    "01_data": (),
    "02_baseline": ("grid", "theory"),
    "03_batch_size": ("grid", "scaling", "theory"),
    "05_training_set_size": ("subset", "theory", "sizes"),
    "06_frameworks": ("frameworks",),
    "07_stability": ("stability", "edge", "theory"),
    "08_scaling_law": ("scaling", "grid", "stability"),
    "09_conclusions": (),
    "10_appendix": EVERY_GROUP,
}


def notebook_parameters(
    dataset: str, profile: str | None, config: str | Path | None
) -> dict[str, Any]:
    """The parameters every task notebook takes (its build), as the runner injects them."""
    config = None if config is None else relative_to_root(config)
    return {"dataset": dataset, "profile": profile, "config": config, "build_dir": None}


def _notebook_products(
    products: list[Product], build: Path, dataset: str, parameters: dict[str, Any]
) -> list[Product]:
    """The product of each task notebook, upstream of it the ``products`` it reads."""
    notebooks = []
    for stem, reads in NOTEBOOKS_READ.items():
        path = NOTEBOOKS / f"{stem}.ipynb"
        notebook = path.relative_to(ROOT).as_posix()
        notebooks.append(
            Product(
                name=f"notebooks/{stem}",
                directory=notebooks_dir(build),
                stem=stem,
                job=NOTEBOOK_JOB,
                params={"dataset": dataset, "notebook": notebook, "parameters": parameters},
                outputs=(f"{stem}.ipynb",),
                upstream=tuple(p.name for p in products if p.group in reads),
                notebook=path,
            )
        )
    return notebooks


def pipeline(
    dataset: str = "mnist", profile: str | None = None, config: str | Path | None = None
) -> list[Product]:
    """Every product of the build of ``dataset`` with ``profile`` (and ``config``)."""
    check_choice("dataset", dataset, DATASETS)
    grids = load_grids(config, profile=profile)
    check_n_train(grids, sum(FACTS[dataset].train_label_counts), dataset)
    build = build_dir(dataset, profile, config)
    # Products start in this order when ready. The framework comparison (the longest product,
    # with its own data and evaluators) goes first, so that the first grid cell builds the
    # evaluator's cached quantities alone. The predictions come late: they make thousands of
    # large temporary arrays, which a fresh worker process pays for in page faults (theory/
    # subset took 54 s first in a build, 26-29 s after the sweep, on the build machine, measured
    # before jobs ran with numpy's huge pages off: jobs.huge_pages).
    products = [comparison_product(build, dataset, profile)]
    products += experiment_products(grids, build, dataset)
    products += scaling_products(build, dataset, config=config, profile=profile, grids=grids)
    products += theory_products(build, dataset, grids)
    products += sizes_products(build, dataset, grids, config=config, profile=profile)
    parameters = notebook_parameters(dataset, profile, config)
    notebooks = _notebook_products(products, build, dataset, parameters)
    report = Product(
        name="report",
        directory=build,
        stem="report",
        job=REPORT_JOB,
        params={
            "dataset": dataset,
            "profile": profile,
            "config": parameters["config"],
            "notebooks": list(NOTEBOOKS_READ),
        },
        outputs=("report.ipynb", "report.html", "report.pdf"),
        upstream=tuple(p.name for p in notebooks),
    )
    return [*products, *notebooks, report]
