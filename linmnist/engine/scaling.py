"""Steps to a target loss against batch size: SGD runs that stop at the target, and the fit.

``steps_to_target`` trains the study's SGD from W = 0 and returns the first step at which the
excess L(W) - L* falls to each target, without a pass over the data: with D = W - W* and
r* = W* x - y, the batch residuals are D xb + r*_b and the excess is 0.5 <D, M>, M = D S,
which follows D -= a E xb^T as M -= a E (S xb)^T (10 B D a step; for B >= ``DIRECT_FROM``
M = D S is recomputed, 10 D^2). Below it the steps run in one compiled loop.

A run stops at the last target, at divergence, at ``max_steps``, or when it has stalled: at
every power of two t >= 2 ``STALL_FROM``, if the mean excess of steps (t/2, t] is not
``STALL_GAIN`` below that of (t/4, t/2] (it sits on its noise floor above the target).

``search_lr`` (``predict_search``: on the prediction) runs a batch size over a descending lr
grid until past the best rate; ``fit_hyperbola`` fits McCandlish et al.'s S = S_min + E_min / B.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from linmnist.engine.evaluation import DIVERGENCE_LOSS
from linmnist.engine.kernel_cache import heal_on_damage
from linmnist.engine.noise_floor import FloorModel, largest_stable_lr, sigma_trajectory
from linmnist.engine.prediction import predicted_horizon, predicted_steps
from linmnist.engine.spectrum import Spectrum
from linmnist.engine.validation import UsageError, check_int, check_number

DIRECT_FROM = 256
STALL_FROM = 128
STALL_GAIN = 0.05
# Batches drawn at a time from the generator.
CHUNK = 256
# The lr search: a run is capped at CAP_FACTOR x the best median steps found so far (last
# target); the search stops at the first rate whose median steps exceed PAST_FACTOR x the
# best for every target.
CAP_FACTOR = 2.0
PAST_FACTOR = 1.3
RUN_COLUMNS = ["batch_size", "lr", "seed", "status", "steps_run", "cap", "seconds"]


@dataclass(frozen=True)
class TargetData:
    """The arrays the runs share, in float32, sample-major (contiguous batch gathers)."""

    X: np.ndarray  # (N, D)
    SX: np.ndarray  # (N, D) rows (S x_i)^T
    residual_star: np.ndarray  # (N, 10) r*_i = W* x_i - y_i
    S: np.ndarray
    W_star: np.ndarray
    loss_star: float


@dataclass(frozen=True)
class TargetRun:
    """One run of ``steps_to_target``."""

    steps: tuple[int | None, ...]  # per target, the first step at or below it (None: not)
    status: str  # "reached" (every target), "stalled", "capped" or "diverged"
    steps_run: int
    seconds: float


def target_data(spec: Spectrum, X: np.ndarray, Y: np.ndarray) -> TargetData:
    """The ``TargetData`` of a training set (X (D, N), Y (10, N)) from its ``Spectrum``."""
    samples = np.ascontiguousarray(np.asarray(X).T, dtype=np.float32)
    S = spec.S.astype(np.float32)
    residual = samples @ spec.W_star.T.astype(np.float32) - np.asarray(Y, dtype=np.float32).T
    SX = samples @ S  # rows (S x_i)^T, S symmetric; float32 like the training
    return TargetData(samples, SX, residual, S, spec.W_star.astype(np.float32), spec.loss_star)


def _check_targets(targets) -> tuple[float, ...]:
    values = [check_number("targets", t, low=0, low_open=True) for t in targets]
    if not values or sorted(values, reverse=True) != values or len(set(values)) != len(values):
        raise UsageError(f"targets must be distinct excess losses > 0, decreasing; got {targets}")
    return tuple(values)


def _check_rates(lrs) -> list[float]:
    lrs = [check_number("lrs", lr, low=0, low_open=True) for lr in lrs]
    if sorted(lrs, reverse=True) != lrs:
        raise UsageError(f"lrs must be decreasing, got {lrs}")
    return lrs


@numba.njit(cache=True, nogil=True, fastmath={"reassoc", "contract"})
def _incremental_steps(X, SX, R, D, M, rows, step, limit, last, out):  # pragma: no cover
    """The steps of ``rows`` (steps, B) on D and M (E = D xb + r*_b, D -= a E xb^T,
    M -= a E (S xb)^T), the excess after each in ``out``, until one is above ``limit`` (or
    NaN) or at most ``last``; returns the number of steps taken."""
    k, d = D.shape
    E = np.empty((rows.shape[1], k), dtype=D.dtype)
    for t in range(rows.shape[0]):
        for s in range(rows.shape[1]):
            x = X[rows[t, s]]
            for c in range(k):
                acc = R[rows[t, s], c]
                for j in range(d):
                    acc += D[c, j] * x[j]
                E[s, c] = acc
        for s in range(rows.shape[1]):
            x, sx = X[rows[t, s]], SX[rows[t, s]]
            for c in range(k):
                e = step * E[s, c]
                for j in range(d):
                    D[c, j] -= e * x[j]
                    M[c, j] -= e * sx[j]
        total = 0.0
        for c in range(k):
            for j in range(d):
                total += D[c, j] * M[c, j]
        out[t] = 0.5 * total
        if not out[t] <= limit or out[t] <= last:
            return t + 1
    return rows.shape[0]


heal_on_damage(_incremental_steps)


def _excesses(data: TargetData, D, M, rows, step, limit, last) -> np.ndarray:
    """``_incremental_steps``' excesses (compiled below ``DIRECT_FROM``)."""
    if rows.shape[1] < DIRECT_FROM:
        out = np.empty(len(rows))
        step = D.dtype.type(step)  # float32 arithmetic, like the training
        done = _incremental_steps(data.X, data.SX, data.residual_star, D, M, rows, step,
                                  limit, last, out)  # fmt: skip
        return out[:done]
    excesses = []
    for batch in rows:
        xb = data.X[batch]
        E = xb @ D.T + data.residual_star[batch]  # (B, 10): W xb - yb
        D -= step * (E.T @ xb)
        np.matmul(D, data.S, out=M)
        excesses.append(0.5 * float(np.vdot(D, M)))
        if not excesses[-1] <= limit or excesses[-1] <= last:
            break
    return np.asarray(excesses)


def steps_to_target(data: TargetData, *, lr: float, batch_size: int, targets: Sequence[float],
                    seed: int = 0, max_steps: int = 100_000) -> TargetRun:  # fmt: skip
    """SGD from W = 0 until the excess loss reaches every one of ``targets`` (decreasing)."""
    start = time.perf_counter()
    a, b = check_number("lr", lr, low=0, low_open=True), check_int("batch_size", batch_size, low=1)
    targets = _check_targets(targets)
    seed, max_steps = check_int("seed", seed, low=0), check_int("max_steps", max_steps, low=1)
    n = data.X.shape[0]
    limit = DIVERGENCE_LOSS - data.loss_star
    rng = np.random.default_rng(seed)
    D = -data.W_star.copy()
    M = D @ data.S
    steps: list[int | None] = [None] * len(targets)
    status, t = "capped", 0
    previous, window, last_check, next_check = math.inf, 0.0, 0, STALL_FROM
    with np.errstate(all="ignore"), threadpool_limits(limits=1, user_api="blas"):
        while t < max_steps and status == "capped":
            chunk = rng.integers(0, n, size=(min(CHUNK, max_steps - t), b))
            lo = 0
            while lo < len(chunk) and status == "capped":
                rows = chunk[lo : lo + next_check - t]  # up to the next stall check
                excess = _excesses(data, D, M, rows, a / b, limit, targets[-1])
                for r, target in enumerate(targets):
                    hit = np.flatnonzero(excess <= target)
                    if steps[r] is None and hit.size:
                        steps[r] = t + int(hit[0]) + 1
                lo, t = lo + len(excess), t + len(excess)
                if not excess[-1] <= limit:  # also NaN
                    status = "diverged"
                elif steps[-1] is not None:
                    status = "reached"
                else:
                    window += float(excess.sum())
                if status == "capped" and t == next_check:
                    mean = window / (t - last_check)
                    if mean > (1 - STALL_GAIN) * previous:
                        status = "stalled"
                    previous, window, last_check, next_check = mean, 0.0, t, 2 * t
                    M = D @ data.S  # float32 drift of the running M, removed at each check
    return TargetRun(tuple(steps), status, t, time.perf_counter() - start)


def lr_grid(lr_max: float, *, top: float, per_octave: int, octaves: int) -> np.ndarray:
    """``top`` x lr_max x 2^(-k / per_octave), k = 0 .. per_octave x octaves, descending."""
    lr_max = check_number("lr_max", lr_max, low=0, low_open=True)
    top = check_number("top", top, low=0, low_open=True)
    per_octave = check_int("per_octave", per_octave, low=1)
    octaves = check_int("octaves", octaves, low=1)
    k = np.arange(per_octave * octaves + 1)
    return top * lr_max * 2.0 ** (-k / per_octave)


def target_columns(n_targets: int) -> list[str]:
    """``steps_0``, ``steps_1``, ...: the steps to each target in a runs table."""
    return [f"steps_{i}" for i in range(n_targets)]


def search_lr(data: TargetData, *, batch_size: int, lrs: Sequence[float], seeds: Sequence[int],
              targets: Sequence[float], max_steps: int) -> pd.DataFrame:  # fmt: skip
    """Every seed at each of ``lrs`` (descending) until past the best rate; a row per run."""
    targets, lrs = _check_targets(targets), _check_rates(lrs)
    best = np.full(len(targets), np.inf)
    rows = []
    for lr in lrs:
        cap = (
            max_steps if math.isinf(best[-1]) else min(max_steps, math.ceil(CAP_FACTOR * best[-1]))
        )
        steps = []
        for seed in seeds:
            run = steps_to_target(
                data, lr=lr, batch_size=batch_size, targets=targets, seed=seed, max_steps=cap
            )
            steps.append([np.inf if s is None else s for s in run.steps])
            rows.append([batch_size, lr, seed, run.status, run.steps_run, cap, run.seconds,
                         *run.steps])  # fmt: skip
        median = np.median(np.array(steps, dtype=float), axis=0)
        if np.isfinite(best).all() and (median > PAST_FACTOR * best).all():
            break
        best = np.minimum(best, median)
    columns = [*RUN_COLUMNS, *target_columns(len(targets))]
    return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[7:]})


def predict_search(spec: Spectrum, model: FloorModel, *, batch_size: int, lrs: Sequence[float],
                   targets: Sequence[float], max_steps: int,
                   sigmas: dict[float, tuple[np.ndarray, np.ndarray]] | None = None
) -> pd.DataFrame:  # fmt: skip
    """``search_lr`` on ``prediction.predicted_steps``, from the first rate below the predicted edge
    until one is worse for every target (``predicted_columns``); ``sigmas`` caches sigma per lr."""
    targets, lrs = _check_targets(targets), _check_rates(lrs)
    sigmas = {} if sigmas is None else sigmas
    edge = largest_stable_lr(model, batch_size=batch_size)
    best = np.full(len(targets), np.inf)
    rows = []
    for lr in (lr for lr in lrs if lr < min(edge, spec.lr_max)):
        if lr not in sigmas:
            horizon = predicted_horizon(spec, lr=lr, target=targets[-1], max_steps=max_steps)
            sigmas[lr] = sigma_trajectory(model, lr=lr, iterations=horizon)
        found = predicted_steps(spec, model, lr=lr, batch_size=batch_size, targets=targets,
                                max_steps=max_steps, sigma=sigmas[lr])  # fmt: skip
        steps = np.array([np.inf if s is None else s for s in found], dtype=float)
        rows.append([batch_size, lr, *found])
        if np.isfinite(best).all() and (steps > best).all():
            break
        best = np.minimum(best, steps)
    columns = predicted_columns(len(targets))
    return pd.DataFrame(rows, columns=columns).astype({c: float for c in columns[2:]})


def predicted_columns(n_targets: int) -> list[str]:
    """The columns of ``predict_search``'s table: batch_size, lr, ``steps_<i>`` per target."""
    return ["batch_size", "lr", *target_columns(n_targets)]


@dataclass(frozen=True)
class Hyperbola:
    """S = S_min + E_min / B fitted to steps S at batch sizes B."""

    s_min: float  # minimum steps (B -> inf)
    e_min: float  # minimum examples (B -> 0)

    @property
    def b_crit(self) -> float:
        """E_min / S_min, where the steps are twice S_min."""
        return self.e_min / self.s_min

    def steps(self, batch_size) -> np.ndarray:
        """The fitted steps at ``batch_size`` (array)."""
        return self.s_min + self.e_min / np.asarray(batch_size, dtype=float)


def fit_hyperbola(batch_sizes: Sequence[int], steps: Sequence[float]) -> Hyperbola:
    """Least squares on the relative errors (S_B - S_min - E_min / B) / S_B, linear in
    (S_min, E_min), over the batch sizes with steps (a ValueError with fewer than two)."""
    B = np.asarray(batch_sizes, dtype=float)
    S = np.asarray(steps, dtype=float)
    if B.shape != S.shape or B.ndim != 1 or not (np.isfinite(B).all() and (B >= 1).all()):
        raise UsageError(
            "batch_sizes must be batch sizes >= 1, one per entry of steps; "
            f"got {list(batch_sizes)} for {len(S)} steps"
        )
    ok = np.isfinite(S) & (S > 0)
    if ok.sum() < 2:
        raise ValueError(f"need steps at two batch sizes or more, got {ok.sum()}")
    B, S = B[ok], S[ok]
    A = np.stack([1 / S, 1 / (B * S)], axis=1)
    (s_min, e_min), *_ = np.linalg.lstsq(A, np.ones_like(S), rcond=None)
    return Hyperbola(float(s_min), float(e_min))


def floor_ratio(start: float, target: float) -> float:
    """B_crit / B_floor in the noisy quadratic model with one slow direction (Zhang et al. 2019).

    A batch B at step eta reaches the target when its floor eta tr Sigma* / (4B) is a share f of
    it and the signal the rest: t ~ ln(R / (1 - f)) / (2 eta lam), R = start / target. A small
    batch takes eta = 4 B f target / tr Sigma*, f* minimising ln(R / (1 - f)) / f solves
    f / (1 - f) + ln(1 - f) = ln R; a large one t ~ ln R / (2 eta_large lam) = S_min. With
    B_floor = eta_large tr Sigma* / (4 target): B_crit / B_floor = ln(R / (1 - f*)) / (f* ln R).
    """
    start = check_number("start", start, low=0, low_open=True)
    target = check_number("target", target, low=0, low_open=True, high=start)
    log_r = math.log(start / target)
    if log_r == 0:
        return math.inf
    low, high = 0.0, 1.0  # f/(1-f) + ln(1-f) rises from 0 to infinity on [0, 1)
    for _ in range(100):
        mid = 0.5 * (low + high)
        low, high = (mid, high) if mid / (1 - mid) + math.log1p(-mid) < log_r else (low, mid)
    share = 0.5 * (low + high)
    return (log_r - math.log1p(-share)) / (share * log_r)
