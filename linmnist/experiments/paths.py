"""Where things are: the repository's folders and the layout of one build.

A build (dataset, profile) owns ``reports/`` (MNIST, full configuration) or
``reports/<dataset>/<profile>/``, holding ``results/<task>/``, ``notebooks/`` and the report.
"""

from __future__ import annotations

from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]
ROOT = PACKAGE.parent
NOTEBOOKS = ROOT / "notebooks"
REPORTS = ROOT / "reports"
LOCK_FILE = ROOT / "requirements.lock"
DEFAULT_CONFIG = PACKAGE / "experiments" / "grids.toml"
DEFAULT_DATASET = "mnist"
FULL_PROFILE = "full"


def profile_name(profile: str | None) -> str:
    """The name a build uses for ``profile``: ``"full"`` for the base configuration."""
    return FULL_PROFILE if profile is None else profile


def build_dir(
    dataset: str = DEFAULT_DATASET, profile: str | None = None, config: str | Path | None = None
) -> Path:
    """The directory of a build (another configuration's under ``config-<stem>/``)."""
    if config is not None and Path(config).resolve() != DEFAULT_CONFIG:
        return REPORTS / dataset / f"config-{Path(config).stem}" / profile_name(profile)
    if dataset == DEFAULT_DATASET and profile is None:
        return REPORTS
    return REPORTS / dataset / profile_name(profile)


def results_dir(build: Path) -> Path:
    """The experiment results of a build."""
    return Path(build) / "results"


def notebooks_dir(build: Path) -> Path:
    """The executed task notebooks of a build."""
    return Path(build) / "notebooks"


def relative_to_root(path: str | Path) -> str:
    """``path`` relative to the repository when it lies inside it (for printed commands)."""
    path = Path(path).resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)
