"""Exact training loss and train/test accuracy of many recorded weight matrices, fast.

* The loss is a quadratic form in W: with S = X X^T and C = Y X^T (computed once),
  N L(W) = 1/2 (<W S, W> - 2 <W, C> + sum Y^2), 10 D^2 work per W instead of a pass over X.
* Lazy scores: a margin m = z_true - max_c z_c moves by at most max_c ||dw_true - dw_c|| ||x||
  when W moves by dW, so each sample keeps the margin certified at its last exact scoring and
  only those the change could flip are looked at again (``kernels.lazy_margins``).
* The projected test decides most of those: the images and the SGD steps lie mostly in the
  span of the top 32 eigenvectors U of S, and dW . x = (dW U) . (U^T x) + at most
  ||dW_out|| ||x_out|| (MNIST, batch 100: 0.9 % of the pairs scored, 5.3 % without it).
* Scores are float32 with their rounding-error bound; every sample whose margin is within it
  is re-scored in float64, so the accuracy is exactly a float64 evaluation's.
* Small batches evaluated at every iteration: Z' = Z - (lr/B) E (Xb^T X), B rows of work
  per iteration instead of 10 (``kernels.running_margins``).

The weights arrive one at a time (``HistoryStream``) and are scored a chunk at a time, by one
single-threaded group of samples per BLAS thread.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property
from typing import TypeVar

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

from linmnist.engine.kernels import (
    TILE,
    Anchoring,
    Grams,
    LazyChunk,
    RankSteps,
    Samples,
    Verdicts,
    float64_correct,
    lazy_margins,
    margins,
    pair_reach,
    rank_gaps,
    running_margins,
)
from linmnist.engine.quantity_cache import cached, data_key
from linmnist.engine.validation import UsageError, check_bool

HISTORY_COLUMNS = ["iteration", "train_loss", "train_acc", "test_acc"]
# A training loss above this (the loss at W = 0 is 0.5) or a non-finite one means divergence.
DIVERGENCE_LOSS = 1e6
# Samples per block when accumulating the Gram matrices (a float64 block fits in cache).
BLOCK = 4096
# Recorded weight matrices per loss product (bounds the memory of one chunk).
CHUNK_ROWS = 320
# Recorded weight matrices per chunk of the lazy scores (one product gives their reach).
LAZY_ROWS = 64
# ... in a stream's first chunk, scored densely: the weights move fast at the start (MNIST,
# batch 100: the chunk after 4 dense steps scores 5 % of its pairs, after 64 steps 2 %).
FIRST_ROWS = 4
# Anchors kept between chunks of the lazy scores.
MAX_ANCHORS = 32
# Principal directions on which the projected test projects the weight changes.
PROJECTION_RANK = 32
# Share of (step, sample) scorings above which one stacked product of every W_t with every
# sample is cheaper than the lazy scores (a compiled dot product is ~3x a BLAS one's time).
DENSE_ABOVE = 0.25
# Samples per block of the stacked products (the block's scores stay in cache).
DENSE_BLOCK = 2048
# Batch samples per chunk of the incremental scores (a longer chunk spreads W_ref X over more
# steps and loosens the error bound, which grows along a chunk).
RUNNING_ROWS = 256


def check_data(
    X, Y, name_x: str, name_y: str, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """X (features, samples) and Y (classes, samples) as arrays, or a UsageError naming them."""
    X, Y = np.asarray(X), np.asarray(Y)
    if X.ndim != 2 or not np.issubdtype(X.dtype, np.number):
        raise UsageError(
            f"{name_x} must be a numeric 2-D array (features, samples), got {X.dtype} {X.shape}"
        )
    if n_features is not None and X.shape[0] != n_features:
        raise UsageError(f"{name_x} must have {n_features} rows (features), got {X.shape[0]}")
    if Y.ndim != 2 or Y.shape[1] != X.shape[1]:
        raise UsageError(
            f"{name_y} must be (classes, samples) with {X.shape[1]} samples like {name_x}, "
            f"got {Y.shape}"
        )
    if X.shape[1] == 0 or X.shape[0] == 0:
        raise UsageError(
            f"{name_x} must hold at least one feature and one sample, got shape {X.shape}"
        )
    for name, array in ((name_x, X), (name_y, Y)):
        if np.issubdtype(array.dtype, np.complexfloating) or array.dtype == bool:
            raise UsageError(f"{name} must hold real numbers, got dtype {array.dtype}")
    # Checked a block of samples at a time: no temporary of the whole array's size.
    if np.issubdtype(X.dtype, np.floating) and not all(
        np.isfinite(X[:, j : j + BLOCK]).all() for j in range(0, X.shape[1], BLOCK)
    ):
        raise UsageError(f"{name_x} must hold finite numbers, got NaN or infinity")
    # One-hot: every entry 0 or 1, one 1 per column (sample).
    if not (((Y == 0) | (Y == 1)).all() and (Y.sum(axis=0) == 1).all()):
        raise UsageError(
            f"{name_y} must be one-hot: entries 0 or 1 and a single 1 per column (sample)"
        )
    return X, Y


def check_test_data(X_test, Y_test, X: np.ndarray, Y: np.ndarray):
    """(X_test, Y_test) checked like the training data (X, Y), or (None, None) if not given."""
    if (X_test is None) != (Y_test is None):
        given = "X_test" if Y_test is None else "Y_test"
        raise UsageError(f"X_test and Y_test must be given together, got {given} alone")
    if X_test is None:
        return None, None
    X_test, Y_test = check_data(X_test, Y_test, "X_test", "Y_test", X.shape[0])
    if Y_test.shape[0] != Y.shape[0]:
        raise UsageError(f"Y_test must have {Y.shape[0]} classes like Y, got {Y_test.shape[0]}")
    return X_test, Y_test


_MaybeX = TypeVar("_MaybeX", np.ndarray, None)


def with_bias_row(X: _MaybeX, bias: bool) -> _MaybeX:
    """X (or None) with a row of ones when ``bias``: a bias is a weight on a constant 1."""
    if X is None or not bias:
        return X
    return np.vstack([X, np.ones((1, X.shape[1]), dtype=X.dtype)])


def evaluate_trajectory(Ws: np.ndarray, X: np.ndarray, Y: np.ndarray,
                        X_test: np.ndarray | None = None, Y_test: np.ndarray | None = None, *,
                        bs: np.ndarray | None = None, iterations: np.ndarray | None = None
) -> pd.DataFrame:  # fmt: skip
    """The exact history (``HISTORY_COLUMNS``) of the weights Ws (T, 10, D); ``bs`` (T, 10) the
    biases, ``iterations`` the rows' numbers (default 0..T-1); the data as for ``train``."""
    Ws = np.asarray(Ws)
    X, Y = check_data(X, Y, "X", "Y")
    if Ws.ndim != 3 or Ws.shape[1:] != (Y.shape[0], X.shape[0]):
        raise UsageError(f"Ws must have shape (T, {Y.shape[0]}, {X.shape[0]}), got {Ws.shape}")
    X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
    if bs is not None:
        bs = np.asarray(bs)
        if bs.shape != Ws.shape[:2]:
            raise UsageError(f"bs must have shape {Ws.shape[:2]}, got {bs.shape}")
        Ws = np.concatenate([Ws, bs[:, :, None]], axis=2)
    iterations = np.arange(len(Ws)) if iterations is None else np.asarray(iterations)
    if iterations.shape != (len(Ws),):
        raise UsageError(f"iterations must have shape ({len(Ws)},), got {iterations.shape}")
    return Evaluator(X, Y, X_test, Y_test, bias=bs is not None).history(Ws, iterations)


class Evaluator:
    """Exact training loss and train/test accuracy of many weight matrices on X, Y (D, N), (10, N)
    and the optional test set ((10, D + 1) with ``bias``); shared by runs on the same data."""

    def __init__(self, X, Y, X_test=None, Y_test=None, *, bias: bool = False):
        bias = check_bool("bias", bias)
        X, Y = check_data(X, Y, "X", "Y")
        X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
        # The checked arrays themselves: a run on these very arrays need not check them again.
        self._sources = (X, Y, X_test, Y_test)
        X, X_test = with_bias_row(X, bias), with_bias_row(X_test, bias)
        self.bias = bool(bias)
        # (features with the bias row, training samples, test samples): a run must match it.
        self.shape = (X.shape[0], X.shape[1], 0 if X_test is None else X_test.shape[1])
        self.n = X.shape[1]
        self.has_test = X_test is not None
        self.parts = [X] if X_test is None else [X, X_test]
        self.labels = np.concatenate(
            [np.argmax(y, axis=0) for y in ([Y, Y_test][: len(self.parts)])]
        )
        d = X.shape[0]
        # The data's key in the cache of per-dataset quantities (None: too small to cache).
        self._key = data_key(
            self._sources[0].T, self.labels, f"classes {Y.shape[0]} train {self.n} bias {bias}",
            *(() if X_test is None else (self._sources[2].T,)),
        )  # fmt: skip
        gram = cached("evaluator", self._key, __file__, lambda: _gram(X, Y, self.parts))
        # Pixels zero in every training image add nothing to the loss: its products skip them.
        self.train_nonzero = gram["train_nonzero"]
        self.loss_rows = np.flatnonzero(self.train_nonzero)
        self.S, self.C, self.norms = gram["S"], gram["C"], gram["norms"]
        self.yy = float(gram["yy"])
        # ||W X - Y||_F <= ||W||_F ||X||_2 + ||Y||_F and ||X||_2^2 = lambda_max(S) <= tr S, so
        # L(W) <= 1/2 (||W||_F sqrt(tr S / N) + sqrt(sum Y^2 / N))^2: a bound that costs one
        # norm, checked at every iteration before the exact loss is needed.
        self.root_trace = np.sqrt(np.trace(self.S) / self.n)
        self.root_yy = np.sqrt(self.yy / self.n)
        u = 2.0**-24
        # |fl32(w . x) - w . x| <= (gamma_D + 2u) ||w|| ||x||: summation plus the rounding of
        # w and x to float32 (Higham, Accuracy and Stability, eq. 3.5); padded by 1 %.
        self.err_factor = 1.01 * (d * u / (1 - d * u) + 2 * u)

    def built_from(self, X, Y, X_test=None, Y_test=None) -> bool:
        """Whether X, Y, X_test, Y_test are the very arrays (not copies) this was built from."""
        return all(a is b for a, b in zip((X, Y, X_test, Y_test), self._sources, strict=True))

    @cached_property
    def active(self) -> np.ndarray:
        """Features non-zero in some sample (719 of MNIST's 784): the others add nothing."""
        nonzero = self.train_nonzero
        if self.has_test:
            nonzero = nonzero | np.any(self.parts[1] != 0, axis=1)
        return np.flatnonzero(nonzero)

    @cached_property
    def projection(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(U, coords, resid): the top ``PROJECTION_RANK`` eigenvectors U of S, u = U^T x and
        ||x - U u|| per sample: d . x = (U^T d) . u + at most ||d - U U^T d|| ||x - U u||."""
        found = cached("projection", self._key, __file__, self._projection)
        return found["U"], found["coords"], found["resid"]

    def _projection(self) -> dict[str, np.ndarray]:
        """``projection``'s arrays, computed."""
        active = self.active
        S = np.zeros((len(active), len(active)))
        pos = np.searchsorted(active, self.loss_rows)
        S[np.ix_(pos, pos)] = self.S
        U = np.linalg.eigh(S)[1][:, ::-1][:, : min(PROJECTION_RANK, len(active))].copy()
        # U on every feature (zero rows where no sample has one), applied to blocks of rows.
        U_all = np.zeros((self.shape[0], U.shape[1]))
        U_all[active] = U
        coords = np.empty((len(self.labels), U.shape[1]))
        start = 0
        for part in self.parts:
            rows = part.T
            for j in range(0, rows.shape[0], BLOCK):
                block = rows[j : j + BLOCK]
                coords[start + j : start + j + len(block)] = block.astype(np.float64) @ U_all
            start += rows.shape[0]
        # ||x - U u||^2 = ||x||^2 - ||u||^2 (U orthonormal); the 1e-12 ||x||^2 added covers
        # the cancellation's rounding (about (D + r) 1e-16 ||x||^2) and U's departure from
        # orthonormality (1e-15).
        norms2 = self.norms**2
        inside = np.einsum("mr,mr->m", coords, coords)
        resid = np.sqrt(np.maximum(norms2 - inside, 0) + 1e-12 * norms2)
        return {"U": U, "coords": coords, "resid": resid}

    @cached_property
    def rows32(self) -> list[np.ndarray]:
        """Train and test sample-major (N, D) in float32: views of ``prepare``'s layout."""
        return [_sample_major32(part) for part in self.parts]

    def losses(self, Ws: np.ndarray) -> np.ndarray:
        """Training loss of every weight matrix in Ws (T, 10, D), in float64."""
        out = np.empty(len(Ws))
        for s in range(0, len(Ws), CHUNK_ROWS):
            W = np.asarray(Ws[s : s + CHUNK_ROWS][:, :, self.loss_rows], dtype=np.float64)
            WS = (W.reshape(-1, W.shape[2]) @ self.S).reshape(W.shape)
            quad = np.einsum("tkd,tkd->t", WS, W) - 2 * np.einsum("tkd,kd->t", W, self.C) + self.yy
            out[s : s + CHUNK_ROWS] = 0.5 * quad / self.n
        return out

    def diverged(self, W: np.ndarray) -> bool:
        """Whether the training loss of W is non-finite or above ``DIVERGENCE_LOSS``."""
        norm = np.sqrt(np.vdot(W, W.astype(np.float64)))
        if 0.5 * (1.01 * norm * self.root_trace + self.root_yy) ** 2 <= DIVERGENCE_LOSS:
            return False
        if not np.all(np.isfinite(W)):
            return True
        loss = self.losses(W[None])[0]
        return not (np.isfinite(loss) and loss <= DIVERGENCE_LOSS)

    def _accuracies(self, correct: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        train = correct[:, : self.n].mean(axis=1)
        test = correct[:, self.n :].mean(axis=1) if self.has_test else np.full(len(correct), np.nan)
        return train, test

    def _exact_correct(self, Ws: np.ndarray, steps: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Whether the float64 arg-max of W[steps[q]] on sample cols[q] is its label."""
        train = self.parts[0].T
        test = self.parts[1].T if self.has_test else train[:0]
        out = np.empty(len(cols), dtype=bool)
        float64_correct(Ws, train, test, steps, cols, self.labels[cols], out)
        return out

    def history(self, Ws: np.ndarray, iterations: np.ndarray,
                updates: tuple[np.ndarray, np.ndarray, float] | None = None
    ) -> pd.DataFrame:  # fmt: skip
        """Metrics of the weights Ws recorded at ``iterations`` (``updates``: incremental)."""
        with self.stream(None if updates is None else updates[2]) as stream:
            for t, W in enumerate(Ws):
                extra = () if updates is None else (updates[0][t], updates[1][t])
                stream.add(iterations[t], W, *extra)
            return stream.frame()

    def stream(self, step: float | None = None) -> HistoryStream:
        """A ``HistoryStream`` (``step`` = lr / B: incremental scores; None: lazy ones)."""
        return HistoryStream(self, step)


class HistoryStream:
    """The metrics of weights recorded one at a time (``add``), scored a chunk at a time and
    dropped; ``frame()`` returns the history. A context manager (it owns the scoring threads).

    The lazy scores keep, per sample, the margin certified at its last exact scoring and the
    weights it was scored with (its *anchor*). After a chunk the anchors are compacted to
    ``MAX_ANCHORS``; the samples of a dropped one are re-anchored to the chunk's last weights,
    their room reduced by the reach between the two, their projected test off until scored.
    """

    def __init__(self, evaluator: Evaluator, step: float | None = None):
        self.ev = evaluator
        self.step = step
        self.threads = _blas_threads()
        ev, threads = evaluator, self.threads
        # One group of samples per thread and data part (train, test): slices of its arrays.
        self.groups: list[tuple[Samples, slice]] = []
        start = 0
        for rows in ev.rows32:
            n = rows.shape[0]
            for g in range(threads):
                lo, hi = n * g // threads, n * (g + 1) // threads
                if hi > lo:
                    cols = slice(start + lo, start + hi)
                    samples = Samples(rows[lo:hi], ev.labels[cols], ev.norms[cols])
                    self.groups.append((samples, cols))
            start += n
        da = len(ev.active)
        self.anchors = np.empty((0, 0, da))
        self.anchor_gram = np.empty((0, 0, 0))
        self.anchor_rho2 = np.empty(0)
        # The anchors' projections A U (A, k, r) and their Gram matrices.
        self.anchor_proj = self.anchor_proj_gram = np.empty((0, 0, 0))
        # Chunks left to score densely, and how many the next lazy chunk scoring more than
        # DENSE_ABOVE of its samples buys (doubled each time: few probes when weights move fast).
        self.dense_left, self.backoff = 1, 1
        self.W_ref = None  # incremental scores: the weights before the pending chunk
        self.pending: list[tuple] = []
        self.parts: list[tuple[np.ndarray, ...]] = []  # (iterations, loss, train, test)
        self.pool = ThreadPoolExecutor(threads)

    @cached_property
    def state(self) -> Anchoring:
        """The lazy scores' per-sample state: a negative room (every sample scored at first), no
        projected test (``anchor_bound`` inf; ``offset`` the float32 scores minus VU . u)."""
        m, k = len(self.ev.labels), self.ev.C.shape[0]
        return Anchoring(
            room=np.full(m, -1.0), slot=np.zeros(m, dtype=np.int64),
            verdict=np.zeros(m, dtype=bool), proj_slot=np.zeros(m, dtype=np.int64),
            offset=np.zeros((m, k)), anchor_bound=np.full(m, np.inf),
            coords=self.ev.projection[1], resid=self.ev.projection[2],
        )  # fmt: skip

    def __enter__(self) -> HistoryStream:
        return self

    def __exit__(self, *exc) -> None:
        self.pool.shutdown()

    def add(self, iteration: int, W: np.ndarray, E=None, batch=None) -> None:
        """Record the weights W (10, D) after ``iteration`` (E_t and the batch if incremental)."""
        self.pending.append((iteration, W, E, batch))
        if self.step is not None:
            chunk = max(4, RUNNING_ROWS // E.shape[1])
        else:
            chunk = LAZY_ROWS if self.parts else FIRST_ROWS
        if len(self.pending) >= chunk:
            self._flush()

    def frame(self) -> pd.DataFrame:
        """The history of every weight matrix added, in the order added."""
        self._flush()
        columns = [np.concatenate(c) for c in zip(*self.parts, strict=True)] if self.parts else [
            np.empty(0, dtype=int), *(np.empty(0) for _ in range(3))
        ]  # fmt: skip
        return pd.DataFrame(dict(zip(HISTORY_COLUMNS, columns, strict=True))).astype(
            {"iteration": int}
        )

    def _each_group(self, work) -> None:
        list(self.pool.map(work, range(len(self.groups)), self.groups))

    def _share_rows(self, fn, rows: np.ndarray) -> list:
        """fn of each of ``threads`` consecutive shares of ``rows`` (first axis), in the pool."""
        return list(self.pool.map(fn, np.array_split(rows, self.threads)))

    def _flush(self) -> None:
        if not self.pending:
            return
        ev = self.ev
        iterations = np.asarray([p[0] for p in self.pending], dtype=int)
        Ws = np.stack([p[1] for p in self.pending])
        correct = np.empty((len(Ws), len(ev.labels)), dtype=bool)
        uncertain = np.empty_like(correct)
        with threadpool_limits(limits=1, user_api="blas"):
            if self.step is None:
                self._lazy_scores(Ws, correct, uncertain)
            else:
                errors = np.stack([p[2] for p in self.pending])
                batches = np.stack([p[3] for p in self.pending])
                self._incremental_scores(Ws, correct, uncertain, errors, batches)
                self.W_ref = Ws[-1].astype(np.float64)
            # The float64 re-scoring of the pairs the bound cannot decide, over the threads.
            steps, cols = np.divmod(np.flatnonzero(uncertain), uncertain.shape[1])
            if len(steps):
                shares = np.array_split(np.arange(len(steps)), self.threads)
                decided = self.pool.map(lambda q: ev._exact_correct(Ws, steps[q], cols[q]), shares)
                correct[steps, cols] = np.concatenate(list(decided))
            # The loss products over the threads, one BLAS thread each (a two-threaded product
            # leaves BLAS's second thread spinning after it, slowing the kernels that follow).
            losses = np.concatenate(self._share_rows(ev.losses, Ws))
        train, test = ev._accuracies(correct)
        self.parts.append((iterations, losses, train, test))
        self.pending = []

    def _reach(self, V: np.ndarray) -> tuple[np.ndarray, ...]:
        """(reach, perp, VU, rounding): how far the scores can move from each anchor to each W_t.

        V (T, k, Da) are the chunk's weights on the active features, A the anchors then V,
        d = V_t - A_a: reach[t, a, c] = max_{e != c} ||d_c - d_e|| (the first test), perp the
        same of d's part outside U's span, VU = V U, rounding[t, a] that of the projected
        test's sums per unit ||x||. The pair norms come from Gram matrices
        (``kernels.pair_reach``), their rounding (entries within 2 n u ||a|| ||b||, 16 per
        norm) covered by adding 64 n u (rho_t^2 + rho_a^2), rho the largest row norm.
        """
        ev = self.ev
        U = ev.projection[0]
        T, k, da = V.shape
        VU = V @ U
        gram = V @ V.transpose(0, 2, 1)
        gramU = VU @ VU.transpose(0, 2, 1)
        rho2 = np.diagonal(gram, axis1=1, axis2=2).max(axis=1)
        A = np.concatenate([self.anchors.reshape(-1, k, da), V])
        AU = np.concatenate([self.anchor_proj.reshape(-1, k, U.shape[1]), VU])
        GA = np.concatenate([self.anchor_gram.reshape(-1, k, k), gram])
        rhoA = np.concatenate([self.anchor_rho2, rho2])
        GAU = np.concatenate([self.anchor_proj_gram.reshape(-1, k, k), gramU])
        rho = rho2[:, None] + rhoA[None, :]
        guard = 64 * da * 2.0**-53 * rho
        guard_perp = 64 * (da + U.shape[1]) * 2.0**-53 * rho * 2
        # The chunk's product with the anchors is large: split over the threads.
        cross = np.concatenate(self._share_rows(lambda part: _cross(part, A), V))
        reach, perp = pair_reach(
            Grams(cross, gram, GA, guard), Grams(_cross(VU, AU), gramU, GAU, guard_perp)
        )
        # The projected test sums 2 r + 2 products of norms at most (rho_t + rho_a) ||x||.
        rounding = 1e-9 * (np.sqrt(rho2)[:, None] + np.sqrt(rhoA)[None, :])
        self._next_anchors = (A, GA, rhoA, AU, GAU)
        return reach, perp, VU, rounding

    def _lazy_scores(self, Ws, correct, uncertain) -> None:
        """``correct`` and ``uncertain`` (T, M) of the chunk Ws by the lazy scores."""
        ev = self.ev
        T, k, _ = Ws.shape
        kp = -(-k // TILE) * TILE
        W32 = np.zeros((T, kp, Ws.shape[2]), dtype=np.float32)
        W32[:, :k] = Ws
        # |margin error| <= 2 max_c |score error| <= 2 err_factor max_c ||w_c|| ||x_i||.
        row_norm = np.sqrt(np.einsum("tkd,tkd->tk", Ws, Ws, dtype=np.float64)).max(axis=1)
        scale = 2 * ev.err_factor * row_norm
        reach, perp, VU, rounding = self._reach(Ws[:, :, ev.active].astype(np.float64))
        base = len(self.anchor_rho2)
        if self.dense_left:
            self.dense_left -= 1
            self._dense_scores(W32[:, :k], scale, base, VU[-1], correct, uncertain)
        else:
            scored = np.zeros(len(self.groups), dtype=np.int64)
            chunk = LazyChunk(W32, scale, reach, perp, rounding, VU)

            def work(j, group):
                samples, g = group
                state = Anchoring._make(a[g] for a in self.state)
                out = Verdicts(correct[:, g], uncertain[:, g])
                scored[j] = lazy_margins(samples, state, chunk, base, out)

            self._each_group(work)
            if scored.sum() > DENSE_ABOVE * T * len(ev.labels):
                self.dense_left, self.backoff = self.backoff, 2 * self.backoff
            else:
                self.backoff = 1
        self._compact(reach[-1])

    def _dense_scores(self, W32, scale, base, VU_last, correct, uncertain) -> None:
        """Every W_t against every sample in stacked float32 products, each anchored at the last."""
        ev, state = self.ev, self.state
        T, k, d = W32.shape
        Wc = W32.reshape(T * k, d)
        buffers = [np.empty(T * k * DENSE_BLOCK, np.float32) for _ in self.groups]

        def work(j, group):
            rows, g = group[0].rows, group[1]
            for lo in range(0, rows.shape[0], DENSE_BLOCK):
                block = rows[lo : lo + DENSE_BLOCK]
                Z = buffers[j][: T * k * len(block)].reshape(T * k, len(block))
                np.matmul(Wc, block.T, out=Z)
                cols = slice(g.start + lo, g.start + lo + len(block))
                labels, norms = ev.labels[cols], ev.norms[cols]
                margins(
                    Z.reshape(T, k, -1), labels, norms, scale, correct[:, cols],
                    uncertain[:, cols],
                )  # fmt: skip
                # The margin at the last step, as the kernels take it (ties give 0).
                z = Z[-k:].astype(np.float64)
                state.offset[cols] = z.T - state.coords[cols] @ VU_last.T
                state.anchor_bound[cols] = scale[-1] * norms
                true = z[labels, np.arange(len(block))]
                z[labels, np.arange(len(block))] = -np.inf
                margin = np.abs(true - z.max(axis=0))
                bound = scale[-1] * norms
                room = np.zeros(len(block))
                np.divide(margin - bound, norms, out=room, where=margin > bound)
                state.room[cols], state.verdict[cols] = room, true - z.max(axis=0) > 0
                state.slot[cols] = state.proj_slot[cols] = base + T - 1

        self._each_group(work)

    def _compact(self, reach_last: np.ndarray) -> None:
        """Keep at most ``MAX_ANCHORS`` anchors; re-anchor the others' samples to the last W_t."""
        A, GA, rhoA, AU, GAU = self._next_anchors
        state = self.state
        last = len(A) - 1
        counts = np.bincount(state.slot, minlength=len(A))
        counts += np.bincount(state.proj_slot[np.isfinite(state.anchor_bound)], minlength=len(A))
        counts[last] = 2 * len(state.slot) + 1  # always kept: the weights to re-anchor to
        keep = np.flatnonzero(counts)
        if len(keep) > MAX_ANCHORS:
            keep = np.sort(np.argsort(-counts, kind="stable")[:MAX_ANCHORS])
            dropped = np.ones(len(A), dtype=bool)
            dropped[keep] = False
            moved = np.flatnonzero(dropped[state.slot])
            state.room[moved] -= reach_last[state.slot[moved], self.ev.labels[moved]]
            state.slot[moved] = last
            # Projected states of a dropped anchor are gone: the test waits for a scoring.
            gone = dropped[state.proj_slot]
            state.anchor_bound[gone] = np.inf
            state.proj_slot[gone] = last
        renumber = np.zeros(len(A), dtype=np.int64)
        renumber[keep] = np.arange(len(keep))
        state.slot[:] = renumber[state.slot]
        state.proj_slot[:] = renumber[state.proj_slot]
        self.anchors, self.anchor_gram, self.anchor_rho2 = A[keep], GA[keep], rhoA[keep]
        self.anchor_proj, self.anchor_proj_gram = AU[keep], GAU[keep]

    def _incremental_scores(self, Ws, correct, uncertain, errors, batches) -> None:
        """Scores of the chunk from the rank-B updates: Z_t = W_ref X - sum_{u <= t} a_u Xb_u^T X,
        a_u = (lr/B) E_u; the trained W_t's distance to that rank-B form enters the bound."""
        ev = self.ev
        tc, k, B = errors.shape
        d = Ws.shape[2]
        a = errors.astype(np.float64) * self.step
        W_ref = self.W_ref if self.W_ref is not None else np.zeros((k, d))
        Xb = ev.rows32[0][batches.ravel()]
        # The batch samples in compressed rows: K_u costs their non-zero pixels only.
        nonzero = Xb != 0
        indptr = np.concatenate([[0], np.cumsum(nonzero.sum(axis=1))])
        indices = np.nonzero(nonzero)[1].astype(np.uint32)
        values = Xb[nonzero]
        # Error of a score, divided by ||x_i||: the float32 products (|K_ui| <= ||x_bu||
        # ||x_i||, so the running sums weigh c = max_k sum |a_u| ||x_bu||; the float64
        # running sums add 1e-12 of that at most), then the distance of the trained W_t
        # to the rank-B form. A margin's error is at most twice a score's.
        xb_norm = ev.norms[batches]
        c = np.cumsum(np.abs(a) @ xb_norm[:, :, None], axis=0)[:, :, 0].max(axis=1)
        gap = rank_gaps(Ws, W_ref, a, Xb.astype(np.float64))
        ref = np.sqrt((W_ref**2).sum(axis=1)).max()
        scale = 2 * 1.01 * ((ev.err_factor + 1e-12) * (ref + c) + gap)
        steps = RankSteps(W_ref.astype(np.float32), indptr, indices, values, a, scale)

        def work(j, group):
            samples, g = group
            running_margins(samples, steps, Verdicts(correct[:, g], uncertain[:, g]))

        self._each_group(work)


def _gram(X: np.ndarray, Y: np.ndarray, parts: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The evaluator's per-dataset quantities: S = X X^T and C = Y X^T on the features non-zero
    in some training sample (``train_nonzero``), sum Y^2 (``yy``) and every sample's norm."""
    S, C, nonzero = grams(X, Y, BLOCK)
    rows = np.flatnonzero(nonzero)
    norms = [np.sqrt(np.einsum("dn,dn->n", P, P, dtype=np.float64)) for P in parts]
    return {
        "train_nonzero": nonzero,
        "S": S[np.ix_(rows, rows)],
        "C": C[:, rows],
        "yy": np.array(np.sum(np.square(Y, dtype=np.float64))),
        "norms": np.concatenate(norms),
    }


def grams(X: np.ndarray, Y: np.ndarray, block: int) -> tuple[np.ndarray, ...]:
    """(X X^T, Y X^T, the features non-zero in some sample) of X (D, N), Y (k, N) in float64,
    ``block`` samples at a time through one float64 buffer (no float64 copy of X)."""
    d, n = X.shape
    S, C, nonzero = np.zeros((d, d)), np.zeros((Y.shape[0], d)), np.zeros(d, dtype=bool)
    buffer = np.empty((d, min(block, n)), order="F")
    for j in range(0, n, block):
        x = buffer[:, : min(n - j, block)]
        x[...] = X[:, j : j + block]
        S += x @ x.T
        C += np.asarray(Y[:, j : j + block], dtype=np.float64) @ x.T
        nonzero |= np.any(x != 0, axis=1)
    return S, C, nonzero


def _cross(V: np.ndarray, A: np.ndarray) -> np.ndarray:
    """X[t, c, a, e] = V_t[c] . A_a[e] for V (T, k, n) and A (A, k, n)."""
    T, k, n = V.shape
    return (V.reshape(T * k, n) @ A.reshape(-1, n).T).reshape(T, k, len(A), k)


def _sample_major32(part: np.ndarray) -> np.ndarray:
    """``part`` (D, N) as float32 (N, D) rows: a view when it is already laid out so."""
    rows = part.T
    if rows.dtype == np.float32 and rows.flags.c_contiguous:
        return rows
    out = np.empty(rows.shape, dtype=np.float32)
    for j in range(0, rows.shape[0], BLOCK // 2):  # a block of samples transposed in cache
        out[j : j + BLOCK // 2] = rows[j : j + BLOCK // 2]
    return out


def _blas_threads() -> int:
    """Threads the BLAS library may use here (1 under ``threadpool_limits(1)``)."""
    counts = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return max(1, min(counts, default=1))
