"""Jobs for the runner's tests: quick, and told by their parameters what to do."""

import json
import os
import time
from pathlib import Path

from numpy._core.multiarray import _set_madvise_hugepage


def write(params: dict, out: Path, stem: str) -> dict:
    """Write ``<stem>.txt`` holding the parameters; pause (always or on the first attempt), wait
    for a file, fail or die when told to."""
    if params.get("pause"):
        Path(params["pause"]).write_text(json.dumps({"pid": os.getpid()}))
        time.sleep(600)
    if params.get("pause_once") and not Path(params["pause_once"]).exists():
        Path(params["pause_once"]).write_text(json.dumps({"pid": os.getpid()}))
        time.sleep(600)
    if params.get("hold"):  # wait until the file exists
        while not Path(params["hold"]).exists():
            time.sleep(0.1)
    if params.get("die"):
        os._exit(3)
    if params.get("attempts"):  # die on the first `die_times` attempts, counted in a file
        log = Path(params["attempts"])
        with log.open("a") as fh:
            fh.write(f"{os.getpid()}\n")
        if len(log.read_text().split()) <= params["die_times"]:
            os._exit(3)
    if params.get("threads"):
        params = {**params, "omp": os.environ.get("OMP_NUM_THREADS")}
    if params.get("advice"):  # numpy's huge-page advice, read by setting it back
        on = _set_madvise_hugepage(False)
        _set_madvise_hugepage(on)
        params = {**params, "huge_pages": on}
    if params.get("fail"):
        raise ValueError(f"told to fail ({params['fail']})")
    (out / f"{stem}.txt").write_text(json.dumps(params))
    return {"value": params.get("value")}


def write_nothing(params: dict, out: Path, stem: str) -> dict:
    """A job that forgets its output."""
    return {}


def write_files(params: dict, out: Path, stem: str) -> dict:
    """Write each file of ``params["files"]``, holding its own name."""
    for name in params["files"]:
        (out / name).write_text(name)
    return {}
