"""The runner: states and their reasons, dependency order, incremental and parallel runs,
failures, killed workers and killed runners, refusals. Toy jobs (``toy_jobs``) keep it fast."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from numpy._core.multiarray import _set_madvise_hugepage

from linmnist.engine.validation import UsageError
from linmnist.experiments import runner
from linmnist.experiments.jobs import blas_threads, huge_pages, make_product
from linmnist.experiments.products import Product
from linmnist.experiments.results import read_run_log
from linmnist.experiments.runner import assess, check_pipeline, plan, run, select

TESTS = Path(__file__).resolve().parents[1]


def toy(
    tmp: Path, name: str, *, upstream=(), job="experiments.toy_jobs:write", **params
) -> Product:
    group, _, stem = name.rpartition("/")
    return Product(
        name=name,
        directory=tmp / (group or "top"),
        stem=stem,
        job=job,
        params={"value": 1, **params},
        outputs=(f"{stem}.txt",),
        upstream=tuple(upstream),
    )


def chain(tmp: Path, **changes) -> list[Product]:
    """a/x and a/y, b/z reading both, c reading b/z."""
    return [
        toy(tmp, "a/x", **changes.get("a/x", {})),
        toy(tmp, "a/y", **changes.get("a/y", {})),
        toy(tmp, "b/z", upstream=["a/x", "a/y"], **changes.get("b/z", {})),
        toy(tmp, "c", upstream=["b/z"], **changes.get("c", {})),
    ]


def states(products):
    return {name: s.state for name, s in assess(products).items()}


def statuses(summary):
    return {o.name: o.status for o in summary.outcomes}


@pytest.mark.slow
def test_a_new_pipeline_is_missing_then_made_then_up_to_date(tmp_path):
    products = chain(tmp_path)
    assert set(states(products).values()) == {"missing"}
    summary = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    assert summary.ok and set(statuses(summary).values()) == {"ok"}
    assert set(states(products).values()) == {"up to date"}
    again = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    assert set(statuses(again).values()) == {"skipped"}
    record = json.loads((tmp_path / "b" / "z.json").read_text())
    assert record["status"] == "ok" and record["value"] == 1
    assert set(record["inputs"]) >= {"code", "notebook", "params", "data", "dependencies"}


@pytest.mark.slow
def test_a_changed_parameter_makes_the_product_and_its_downstream_stale_and_only_they_rerun(
    tmp_path,
):
    run(chain(tmp_path), lock_dir=tmp_path, progress=False)
    changed = chain(tmp_path, **{"a/y": {"value": 2}})
    found = assess(changed)
    assert found["a/x"].state == "up to date"
    assert found["a/y"].state == "stale" and found["a/y"].reasons == ("parameters",)
    assert found["b/z"].state == "stale" and "upstream a/y is stale" in found["b/z"].reasons
    assert found["c"].state == "stale" and "upstream b/z is stale" in found["c"].reasons
    summary = run(changed, lock_dir=tmp_path, progress=False)
    assert statuses(summary) == {"a/x": "skipped", "a/y": "ok", "b/z": "ok", "c": "ok"}
    assert set(states(changed).values()) == {"up to date"}


@pytest.mark.slow
def test_an_upstream_product_remade_on_its_own_makes_its_downstream_stale(tmp_path):
    run(chain(tmp_path), lock_dir=tmp_path, progress=False)
    changed = chain(tmp_path, **{"a/x": {"value": 2}})
    run(select(changed, ["a/x"]), lock_dir=tmp_path, progress=False)
    found = assess(changed)
    assert found["a/x"].state == "up to date"
    assert found["b/z"].reasons == ("upstream a/x was remade",)
    assert found["c"].reasons == ("upstream b/z is stale",)


@pytest.mark.slow
def test_remaking_with_the_same_inputs_leaves_the_downstream_up_to_date(tmp_path):
    products = chain(tmp_path)
    run(products, lock_dir=tmp_path, progress=False)
    run(select(products, ["a/x"]), lock_dir=tmp_path, force=True, progress=False)
    assert set(states(products).values()) == {"up to date"}


def _edit_record(tmp: Path) -> None:
    path = tmp / "a" / "x.json"
    path.write_text(path.read_text().replace('"value": 1', '"value": 7'))


@pytest.mark.slow
@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda t: (t / "a" / "x.txt").write_text('{"value": 9}'), "output changed: {}/a/x.txt"),
        (lambda t: (t / "a" / "x.txt").write_bytes(b"{"), "output changed: {}/a/x.txt"),
        (lambda t: (t / "a" / "x.txt").write_bytes(b""), "output changed: {}/a/x.txt"),
        (lambda t: (t / "a" / "x.txt").unlink(), "output removed: {}/a/x.txt"),
        (_edit_record, "record changed: {}/a/x.json"),
    ],
    ids=["edited", "truncated", "emptied", "removed", "record edited"],
)
def test_a_product_whose_files_changed_is_stale_with_the_reason_and_is_remade(
    tmp_path, damage, reason
):
    products = chain(tmp_path)
    run(products, lock_dir=tmp_path, progress=False)
    damage(tmp_path)
    found = assess(products)
    assert found["a/x"].state == "stale"
    assert found["a/x"].reasons[0] == reason.format(tmp_path)
    assert found["b/z"].reasons == ("upstream a/x is stale",)
    summary = run(products, lock_dir=tmp_path, progress=False)
    assert statuses(summary)["a/x"] == "ok" and statuses(summary)["a/y"] == "skipped"
    assert set(states(products).values()) == {"up to date"}
    assert json.loads((tmp_path / "a" / "x.txt").read_text())["value"] == 1


@pytest.mark.slow
def test_a_failing_job_is_recorded_downstream_still_runs_and_it_reruns_next_time(tmp_path):
    products = chain(
        tmp_path,
        **{"a/y": {"fail": "on purpose"}, "a/x": {"job": "experiments.toy_jobs:write_nothing"}},
    )
    summary = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    assert not summary.ok
    assert statuses(summary) == {"a/x": "failed", "a/y": "failed", "b/z": "ok", "c": "ok"}
    failures = {o.name: o.error for o in summary.failed}
    assert failures["a/y"] == "ValueError: told to fail (on purpose)"
    assert "wrote none of ['x.txt']" in failures["a/x"]
    found = assess(products)
    assert found["a/y"].state == "failed" and "told to fail" in found["a/y"].reasons[0]
    assert "upstream a/y is failed" in found["b/z"].reasons
    assert "FAILED a/y: ValueError: told to fail (on purpose)" in summary.format()


@pytest.mark.slow
def test_a_worker_that_dies_fails_its_product_and_the_others_complete(tmp_path):
    products = chain(tmp_path, **{"a/x": {"die": True}})
    summary = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    assert statuses(summary) == {"a/x": "failed", "a/y": "ok", "b/z": "ok", "c": "ok"}
    assert "worker process died 2 times" in summary.failed[0].error
    assert json.loads((tmp_path / "a" / "x.json").read_text())["status"] == "failed"


def test_a_plan_makes_and_creates_nothing(tmp_path):
    build = tmp_path / "build"
    planned = plan(chain(build), lock_dir=build)
    assert [s.name for s in planned] == ["a/x", "a/y", "b/z", "c"]
    assert [s.state for s in planned] == ["missing"] * 4 and not build.exists()


@pytest.mark.slow
def test_force_remakes_up_to_date_products(tmp_path):
    products = chain(tmp_path)
    run(products, lock_dir=tmp_path, progress=False)
    assert plan(products, lock_dir=tmp_path) == []
    assert [s.name for s in plan(products, lock_dir=tmp_path, force=True)] == [
        "a/x",
        "a/y",
        "b/z",
        "c",
    ]
    summary = run(products, lock_dir=tmp_path, force=True, progress=False)
    assert set(statuses(summary).values()) == {"ok"}


@pytest.mark.slow
def test_a_run_logs_each_group_once_and_digests_each_products_inputs_once(tmp_path, monkeypatch):
    """One line per group in runs.jsonl, with its counts; a product's own inputs are digested
    once per run (to assess it), not again when it is made."""
    digested = []
    own_inputs = runner.own_inputs
    monkeypatch.setattr(
        runner, "own_inputs", lambda p, *args: digested.append(p.name) or own_inputs(p, *args)
    )
    products = chain(tmp_path, **{"c": {"fail": True}})
    summary = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    assert sorted(digested) == ["a/x", "a/y", "b/z", "c"]
    log = read_run_log(tmp_path).set_index("tasks")
    assert sorted(log.index) == sorted(summary.wall_by_group) == ["a", "b", "c"]
    assert log.loc["a", ["cells", "ok", "failed"]].tolist() == [2, 2, 0]
    assert log.loc["c", ["cells", "ok", "failed"]].tolist() == [1, 0, 1]
    assert (log["jobs"] == summary.jobs).all() and (log["executor"] == "local").all()


@pytest.mark.parametrize(
    ("products", "message"),
    [
        (lambda t: [toy(t, "a/x"), toy(t, "a/x")], "two products named 'a/x'"),
        (lambda t: [toy(t, "a/x", upstream=["nope"])], "unknown upstream products ['nope']"),
        (lambda t: [toy(t, "a/x", upstream=["a/y"]), toy(t, "a/y")], "comes before its upstream"),
    ],
)
def test_a_malformed_pipeline_is_refused(tmp_path, products, message):
    with pytest.raises(UsageError, match=message.replace("[", r"\[").replace("]", r"\]")):
        check_pipeline(products(tmp_path))


def test_select_takes_the_upstream_products_of_its_targets(tmp_path):
    products = chain(tmp_path)
    assert [p.name for p in select(products, ["b"])] == ["a/x", "a/y", "b/z"]
    assert [p.name for p in select(products, ["a/x"])] == ["a/x"]
    with pytest.raises(
        UsageError, match=r"target 'zzz' names no product; accepted: a group \(a, b, c\)"
    ):
        select(products, ["zzz"])


def test_a_second_runner_on_the_same_build_is_refused(tmp_path):
    import fcntl

    with open(tmp_path / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        with pytest.raises(UsageError, match="another linmnist run is using"):
            run(chain(tmp_path), lock_dir=tmp_path, progress=False)


def test_blas_threads_split_the_cores_between_jobs():
    assert blas_threads(1, cores=2) == 2
    assert blas_threads(2, cores=2) == 1
    assert blas_threads(3, cores=2) == 1


@pytest.mark.parametrize("before", [True, False])
def test_a_job_runs_without_huge_pages_and_the_worker_setting_is_restored(tmp_path, before):
    product = toy(tmp_path, "a/x", advice=True)
    previous = _set_madvise_hugepage(before)
    try:
        assert make_product(product, {}).status == "ok"
        assert _set_madvise_hugepage(previous) is before
    finally:
        _set_madvise_hugepage(previous)
    assert json.loads((tmp_path / "a" / "x.txt").read_text())["huge_pages"] is False


def test_huge_pages_sets_the_advice_in_its_block_only():
    previous = _set_madvise_hugepage(False)
    try:
        with huge_pages(True):
            assert _set_madvise_hugepage(True) is True
        assert _set_madvise_hugepage(False) is False
    finally:
        _set_madvise_hugepage(previous)


def _wait(condition, seconds):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.1)
    return condition()


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


# The runner as a terminal starts it: Ctrl-C's default handler, whatever this process inherited
# (a test process whose SIGINT is ignored would pass that on, and the SIGINT would never land).
RUNNER = """
import signal
import sys
from pathlib import Path
signal.signal(signal.SIGINT, signal.default_int_handler)
sys.path.insert(0, {tests!r})
from experiments.test_runner import chain
from linmnist.experiments.runner import run
if __name__ == "__main__":
    build = Path({build!r})
    run(chain(build, **{{"a/x": {{"pause": {marker!r}}}}}), lock_dir=build, jobs=2, progress=False)
"""


@pytest.mark.slow
@pytest.mark.parametrize("how", ["SIGKILL to the runner", "SIGINT to the process group"])
def test_an_interrupted_product_is_not_taken_as_made_and_is_made_next_time(tmp_path, how):
    """Killing a run while a job runs leaves no record of it and its worker exits too; the
    next run removes the leftovers and makes it."""
    build, marker = tmp_path / "build", tmp_path / "marker.json"
    script = tmp_path / "runner.py"
    script.write_text(RUNNER.format(tests=str(TESTS), build=str(build), marker=str(marker)))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert _wait(lambda: marker.is_file() and marker.stat().st_size > 0, 60), "never started"
        worker = json.loads(marker.read_text())["pid"]
        if how.startswith("SIGKILL"):
            proc.kill()
        else:
            os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert _wait(lambda: not _alive(worker), 15), "the worker outlived the runner"
    assert not (build / "a" / "x.json").exists()
    products = chain(build)
    assert states(products)["a/x"] == "missing"
    summary = run(products, lock_dir=build, progress=False)
    assert statuses(summary)["a/x"] == "ok"
    assert sorted(p.name for p in (build / "a").iterdir()) == ["x.json", "x.txt", "y.json", "y.txt"]


def test_a_build_directory_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    build = tmp_path / "build"
    build.write_text("not a directory")
    with pytest.raises(UsageError, match="cannot be written .* must be a writable directory"):
        run(chain(build), lock_dir=build, progress=False)


@pytest.mark.slow
def test_a_product_directory_that_is_a_file_fails_only_its_products(tmp_path):
    """A task directory that is a file, or a record path that is a directory, fails the
    products it touches, each with the reason; the others are made and the run goes on."""
    (tmp_path / "a").write_text("a file where a directory should be")
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "z.json").mkdir()
    products = [*chain(tmp_path), toy(tmp_path, "d/w")]
    summary = run(products, lock_dir=tmp_path, jobs=2, progress=False)
    found = {o.name: o for o in summary.outcomes}
    assert found["a/x"].status == found["a/y"].status == "failed"
    assert found["a/x"].error.endswith(f"cannot write {tmp_path / 'a'}: it is not a directory")
    assert found["b/z"].status == "failed" and "z.json: it exists and is not a file" in (
        found["b/z"].error
    )
    assert found["d/w"].status == "ok" and found["c"].status == "ok"
    assert not summary.ok


@pytest.mark.slow
def test_the_debris_of_a_killed_run_is_removed_even_where_nothing_is_remade(tmp_path):
    products = chain(tmp_path)
    run(products, lock_dir=tmp_path, progress=False)
    debris = [tmp_path / "a" / ".x.123.staging", tmp_path / "b" / ".z.json.9.ab.tmp"]
    debris[0].mkdir()
    (debris[0] / "x.txt").write_text("half")
    debris[1].write_text("half")
    summary = run(products, lock_dir=tmp_path, progress=False)
    assert set(statuses(summary).values()) == {"skipped"}
    assert not any(path.exists() for path in debris)


def test_the_summary_says_where_the_time_went_per_group():
    from linmnist.experiments.jobs import Outcome
    from linmnist.experiments.runner import RunSummary

    summary = RunSummary(
        (Outcome("a/x", "ok", seconds=2.0), Outcome("a/y", "ok", seconds=3.0), Outcome("c", "ok")),
        4.5,
        jobs=2,
        wall_by_group={"a": 3.25},
    )
    lines = summary.format().splitlines()
    assert lines[0].startswith("a ") and lines[0].endswith("job time 5.0 s, wall 3.2 s")
    assert lines[1].endswith("job time 0.0 s") and lines[-1].startswith("4.5 s wall time")


def test_planning_is_linear_in_the_products(tmp_path, monkeypatch):
    """A dry run of many products compares no products (a list lookup per product was
    quadratic) and follows each distinct job's code closure once, not once per product."""
    from linmnist.experiments import fingerprint

    products = [toy(tmp_path, f"a/p{i}", value=i) for i in range(2000)]
    closures = []
    closure = fingerprint.module_closure
    monkeypatch.setattr(fingerprint, "module_closure", lambda m: closures.append(m) or closure(m))
    monkeypatch.setattr(Product, "__eq__", lambda self, other: pytest.fail("products compared"))
    planned = plan(products, lock_dir=tmp_path)
    assert len(planned) == 2000 and len(closures) <= 2  # not one per product


# A dry run of 100,000 cells answering within 60 s: tools/bad-inputs.py, family "work bounds"
# (tests/test_bad_inputs.py).


def test_job_limit_caps_jobs_at_the_cores_and_the_memory_and_says_so(monkeypatch):
    from linmnist.experiments import jobs

    monkeypatch.setattr(jobs, "available_cores", lambda: 8)
    monkeypatch.setattr(jobs, "available_memory", lambda: 3 * jobs.JOB_MEMORY + 1)
    assert jobs.job_limit(2) == (2, None)
    limit, note = jobs.job_limit(1000)
    assert limit == 3 and note.startswith("--jobs 1000 capped at 3: this machine has 8 core(s)")
    monkeypatch.setattr(jobs, "available_memory", lambda: 0)
    assert jobs.job_limit(4)[0] == 1


@pytest.mark.slow
def test_a_run_never_starts_more_workers_than_the_machine_holds(tmp_path, monkeypatch):
    from linmnist.experiments import jobs

    monkeypatch.setattr(jobs, "available_cores", lambda: 1)
    summary = run(chain(tmp_path), lock_dir=tmp_path, jobs=1000, progress=False)
    assert summary.ok and summary.jobs == 1
