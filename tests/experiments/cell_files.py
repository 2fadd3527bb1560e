"""Writing a grid cell's files as its job does, for tests that read them back."""

from pathlib import Path
from typing import Any

from linmnist.experiments.results import (
    atomic_write_text,
    histories,
    history_path,
    json_path,
    plain,
    summarize,
    write_record,
)


def save_cell(out_dir: Path, cell: str, *, task: str, params: dict[str, Any], runs) -> Path:
    """A cell's history CSV, then its JSON record (status ok), as ``cell_job`` and the runner
    write them (no fingerprint, notebook or wall time); returns the record's path."""
    atomic_write_text(history_path(out_dir, cell), histories(runs).to_csv(index=False))
    record = {
        "task": task,
        "cell": cell,
        "status": "ok",
        "error": None,
        "params": params,
        "fingerprint": None,
        "notebook": None,
        "wall_seconds": None,
        "seeds": [plain(row) for row in summarize(runs).to_dict("records")],
    }
    path = json_path(out_dir, cell)
    write_record(path, record)
    return path
