"""Exact training loss and train/test accuracy of many recorded weight matrices, fast.

This is where a seed-fidelity run spends its time (the study multiplied the full
784 x 60000 matrix three times per iteration in float64), and where the algebra saves it:

* the training loss is a quadratic form in W: with S = X X^T and C = Y X^T (computed
  once), N L(W) = 1/2 (<W S, W> - 2 <W, C> + N), so it costs 10 x D x D per weight
  matrix instead of a product with the whole training set, and all recorded iterations
  share one product;
* accuracy needs the arg-max of every score vector. The scores of many recorded weights
  are computed in one float32 matrix product (a stack of W's against X, which runs near
  the machine's peak), and every sample whose float32 margin is within the product's
  rounding-error bound is re-scored in float64, so the arg-max, and hence the accuracy,
  is exactly that of a float64 evaluation;
* for small batches evaluated at every iteration, the scores are updated incrementally:
  W' = W - (lr/B) E Xb^T implies Z' = Z - (lr/B) E (Xb^T X), which costs B rather than
  10 rows of work per iteration (docs/study.md, "Facts we measured"), computed a chunk of
  iterations at a time with the same error bound and float64 re-scoring.

The margins themselves (and, for small batches, the running sums) are compiled loops in
``linmnist.engine.kernels``; the samples are split into one group per BLAS thread, each scored
by its own single-threaded product and kernel.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from functools import cached_property

import numpy as np
import pandas as pd
from threadpoolctl import threadpool_info, threadpool_limits

from linmnist.engine.kernels import margins, running_margins
from linmnist.engine.validation import UsageError, check_bool

HISTORY_COLUMNS = ["iteration", "train_loss", "train_acc", "test_acc"]
# A training loss above this (the loss at W = 0 is 0.5) or a non-finite one means divergence.
DIVERGENCE_LOSS = 1e6
# Samples per block when accumulating the Gram matrices (a float64 block fits in cache).
BLOCK = 4096
# Recorded iterations scored per float32 product (bounds the memory of one chunk).
CHUNK_ROWS = 320
# Batch samples per product in the incremental scores: longer chunks make the product
# more efficient and the error bound (which grows along a chunk) looser.
RUNNING_ROWS = 256


def check_data(
    X, Y, name_x: str, name_y: str, n_features: int | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """X (features, samples) and Y (classes, samples) as arrays, or a UsageError naming them."""
    X = np.asarray(X)
    Y = np.asarray(Y)
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
    if np.issubdtype(X.dtype, np.floating) and not np.isfinite(X).all():
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


def with_bias_row(X: np.ndarray, bias: bool) -> np.ndarray:
    """A model with a bias is the model without one on inputs extended by a constant 1."""
    if not bias:
        return X
    return np.vstack([X, np.ones((1, X.shape[1]), dtype=X.dtype)])


def evaluate_trajectory(
    Ws: np.ndarray,
    X: np.ndarray,
    Y: np.ndarray,
    X_test: np.ndarray | None = None,
    Y_test: np.ndarray | None = None,
    *,
    bs: np.ndarray | None = None,
    iterations: np.ndarray | None = None,
) -> pd.DataFrame:
    """Metrics of every recorded weight matrix, exactly as a float64 evaluation gives them.

    Parameters
    ----------
    Ws : ndarray (T, 10, D)
        Weights after each recorded iteration.
    X, Y, X_test, Y_test : ndarray
        Feature-major data and one-hot labels, as for ``train``.
    bs : ndarray (T, 10), optional
        Biases, for a model W x + b.
    iterations : int ndarray (T,), optional
        Iteration numbers of the rows (default 0..T-1).
    """
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
    bias = bs is not None
    return Evaluator(X, Y, X_test, Y_test, bias=bias).history(Ws, iterations)


class Evaluator:
    """Exact training loss and train/test accuracy of many weight matrices.

    Holds the data in the layouts the fast paths need: the float64 Gram matrices for the
    loss and the train and test sets side by side (D, N + N_test) for the scores. Used by
    ``sgd.train`` and by the framework comparison, so both are measured identically.

    Building one costs about a second on MNIST (mostly the Gram matrix); runs on the same
    data can share one (``train(..., evaluator=...)``).

    Parameters
    ----------
    X, Y : ndarray (D, N), (10, N)
        Training data (feature-major) and one-hot labels.
    X_test, Y_test : ndarray, optional
        Test set.
    bias : bool
        Evaluate models W x + b, given as weights (10, D + 1) with b as the last column.
    """

    def __init__(self, X, Y, X_test=None, Y_test=None, *, bias: bool = False):
        bias = check_bool("bias", bias)
        X, Y = check_data(X, Y, "X", "Y")
        X_test, Y_test = check_test_data(X_test, Y_test, X, Y)
        X = with_bias_row(X, bias)
        X_test = None if X_test is None else with_bias_row(X_test, bias)
        self.bias = bool(bias)
        # (features including the bias row, training samples, test samples): what a run
        # using this evaluator must match.
        self.shape = (X.shape[0], X.shape[1], 0 if X_test is None else X_test.shape[1])
        self.n = X.shape[1]
        self.has_test = X_test is not None
        self.parts = [X] if X_test is None else [X, X_test]
        self.labels = np.concatenate(
            [np.argmax(y, axis=0) for y in ([Y, Y_test][: len(self.parts)])]
        )
        d = X.shape[0]
        # Loss as a quadratic form: N L(W) = 1/2 (<W S, W> - 2 <W, C> + sum Y^2), with the
        # Gram matrices accumulated over blocks of samples in float64 (no full float64 copy).
        S = np.zeros((d, d))
        C = np.zeros((Y.shape[0], d))
        self.train_nonzero = np.zeros(d, dtype=bool)
        for j in range(0, self.n, BLOCK):
            # A block of samples, sample-major: a contiguous copy when X is the transpose of
            # a sample-major array, as ``prepare`` returns it.
            Xb = np.asarray(X[:, j : j + BLOCK].T, dtype=np.float64)
            S += Xb.T @ Xb
            C += np.asarray(Y[:, j : j + BLOCK], dtype=np.float64) @ Xb
            self.train_nonzero |= np.any(Xb != 0, axis=0)
        # Pixels that are zero in every training image add nothing to the loss; the
        # per-iteration products skip them.
        self.loss_rows = np.flatnonzero(self.train_nonzero)
        self.S = S[np.ix_(self.loss_rows, self.loss_rows)]
        self.C = C[:, self.loss_rows]
        self.yy = float(np.sum(np.square(Y, dtype=np.float64)))
        # ||W X - Y||_F <= ||W||_F ||X||_2 + ||Y||_F and ||X||_2^2 = lambda_max(S) <= tr S, so
        # L(W) <= 1/2 (||W||_F sqrt(tr S / N) + sqrt(sum Y^2 / N))^2: a bound that costs one
        # norm, checked at every iteration before the exact loss is needed.
        self.root_trace = np.sqrt(np.trace(self.S) / self.n)
        self.root_yy = np.sqrt(self.yy / self.n)
        self.norms = np.concatenate(
            [np.sqrt(np.einsum("dn,dn->n", P, P, dtype=np.float64)) for P in self.parts]
        )
        u = 2.0**-24
        # |fl32(w . x) - w . x| <= (gamma_D + 2u) ||w|| ||x||: summation plus the rounding of
        # w and x to float32 (Higham, Accuracy and Stability, eq. 3.5); padded by 1 %.
        self.err_factor = 1.01 * (d * u / (1 - d * u) + 2 * u)

    @cached_property
    def active(self) -> np.ndarray:
        """Features non-zero in some sample: the others add nothing to any score.

        (MNIST: 719 of 784 pixels over the training and test sets.)
        """
        nonzero = self.train_nonzero
        if self.has_test:
            nonzero = nonzero | np.any(self.parts[1] != 0, axis=1)
        return np.flatnonzero(nonzero)

    @cached_property
    def X32(self) -> np.ndarray:
        """Active features of train and test side by side in float32: one product scores both."""
        out = np.empty((len(self.active), len(self.labels)), dtype=np.float32)
        start = 0
        for part in self.parts:
            # Block by block: the callers' arrays are usually sample-major (Fortran order),
            # and a block of samples fits in cache while it is transposed.
            for j in range(0, part.shape[1], BLOCK // 2):
                block = part[:, j : j + BLOCK // 2][self.active]
                out[:, start + j : start + j + block.shape[1]] = block
            start += part.shape[1]
        return out

    def _columns64(self, cols: np.ndarray) -> np.ndarray:
        """Samples ``cols`` of the stacked data, exactly as given, in float64."""
        train = cols[cols < self.n]
        out = [np.asarray(self.parts[0][:, train], dtype=np.float64)]
        if self.has_test:
            out.append(
                np.asarray(self.parts[1][:, cols[cols >= self.n] - self.n], dtype=np.float64)
            )
        return np.hstack(out)

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

    def _frame(self, iterations, losses, correct) -> pd.DataFrame:
        train_acc, test_acc = self._accuracies(correct)
        return pd.DataFrame(
            {
                "iteration": np.asarray(iterations, dtype=int),
                "train_loss": losses,
                "train_acc": train_acc,
                "test_acc": test_acc,
            }
        )

    def _exact_correct(self, W64: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """Float64 arg-max (first maximum on ties, as np.argmax) of samples ``cols`` (ascending)."""
        Z = W64 @ self._columns64(cols)
        return np.argmax(Z, axis=0) == self.labels[cols]

    def history(
        self,
        Ws: np.ndarray,
        iterations: np.ndarray,
        updates: tuple[np.ndarray, np.ndarray, float] | None = None,
    ) -> pd.DataFrame:
        """Metrics of the weights Ws (T, 10, D) recorded at ``iterations``.

        ``updates`` = (errors E_t (T, 10, B), batches (T, B), lr / B) of consecutive
        iterations switches to the incremental scores (Ws must then hold every iteration).
        Either way, float32 scores come with a per-sample error bound, and every sample
        whose margin the bound cannot decide is re-scored in float64.
        """
        correct = np.empty((len(Ws), len(self.labels)), dtype=bool)
        threads = _blas_threads()
        m = self.X32.shape[1]  # (builds the scoring copy once, before the threads share it)
        groups = [slice(m * g // threads, m * (g + 1) // threads) for g in range(threads)]
        # One single-threaded product and kernel per group of samples, in parallel threads.
        with threadpool_limits(limits=1, user_api="blas"), ThreadPoolExecutor(threads) as pool:

            def each_group(work):
                list(pool.map(work, range(threads), groups))

            chunks = (
                self._direct_scores(Ws, correct, groups, each_group)
                if updates is None
                else self._incremental_scores(Ws, correct, groups, each_group, *updates)
            )
            for s, uncertain in chunks:
                for t, cols in _uncertain(uncertain):
                    W64 = Ws[s + t].astype(np.float64)
                    correct[s + t, cols] = self._exact_correct(W64, cols)
        return self._frame(iterations, self.losses(Ws), correct)

    def _direct_scores(self, Ws, correct, groups, each_group):
        """Chunks of Z_t = W_t X: many W_t stacked in one float32 product.

        Fills ``correct`` chunk by chunk and yields (first row, uncertain (rows, M)).
        """
        T, k, _ = Ws.shape
        step = max(1, CHUNK_ROWS // k)
        row_norm = np.sqrt(np.einsum("tkd,tkd->tk", Ws, Ws, dtype=np.float64)).max(axis=1)
        uncertain = np.empty((min(step, T), len(self.labels)), dtype=bool)
        # Products go to buffers allocated once (fresh pages would cost more than a product).
        out = [np.empty((min(step, T) * k, g.stop - g.start), np.float32) for g in groups]
        for s in range(0, T, step):
            tc = min(step, T - s)
            Wc = Ws[s : s + tc][:, :, self.active].astype(np.float32).reshape(tc * k, -1)
            # |margin error| <= 2 max_c |score error| <= 2 err_factor max_c ||w_c|| ||x_i||.
            scale = 2 * self.err_factor * row_norm[s : s + tc]

            def work(j, g, Wc=Wc, scale=scale, s=s, tc=tc):
                Z = np.matmul(Wc, self.X32[:, g], out=out[j][: tc * k]).reshape(tc, k, -1)
                margins(
                    Z, self.labels[g], self.norms[g], scale,
                    correct[s : s + tc, g], uncertain[:tc, g],
                )  # fmt: skip

            each_group(work)
            yield s, uncertain[:tc]

    def _incremental_scores(self, Ws, correct, groups, each_group, errors, batches, step):
        """Chunks of Z_t from the rank-B updates: about B (not 10) rows of work per iteration.

        Within a chunk, W_t = W_ref - sum_{u <= t} a_u Xb_u^T with a_u = (lr/B) E_u, so
        Z_t = W_ref X - sum_{u <= t} a_u K_u with K_u = Xb_u^T X. One float32 product gives
        P = [W_ref; Xb_1^T; ...] X; the running sums and the margins are one compiled pass
        (``kernels.running_margins``). Starting each chunk from W_ref X keeps the error
        bound from growing across chunks; the trained W_t differs from the rank-B form by
        its own rounding, and that gap enters the bound like the products' rounding does.
        """
        T, k, B = errors.shape
        d = Ws.shape[2]
        X = self.parts[0]
        chunk = max(4, RUNNING_ROWS // B)
        a = errors.astype(np.float64) * step
        uncertain = np.empty((min(chunk, T), len(self.labels)), dtype=bool)
        out = [np.empty((k + min(chunk, T) * B, g.stop - g.start), np.float32) for g in groups]
        for s in range(0, T, chunk):
            tc = min(chunk, T - s)
            W_ref = Ws[s - 1].astype(np.float64) if s else np.zeros((k, d))
            ac = a[s : s + tc]
            Xb = np.asarray(X[:, batches[s : s + tc].ravel()], dtype=np.float64)
            left = np.vstack([W_ref, Xb.T])[:, self.active].astype(np.float32)
            # Error of a score, divided by ||x_i||: the float32 products (|K_ui| <= ||x_bu||
            # ||x_i||, so the running sums weigh c = max_k sum |a_u| ||x_bu||; the float64
            # running sums add 1e-12 of that at most), then the distance of the trained W_t
            # to the rank-B form. A margin's error is at most twice a score's.
            xb_norm = self.norms[batches[s : s + tc]]
            c = np.cumsum(np.abs(ac) @ xb_norm[:, :, None], axis=0)[:, :, 0].max(axis=1)
            W_rank = W_ref - np.cumsum(ac @ Xb.T.reshape(tc, B, d), axis=0)
            gap = np.sqrt(((Ws[s : s + tc] - W_rank) ** 2).sum(axis=2)).max(axis=1)
            ref = np.sqrt((W_ref**2).sum(axis=1)).max()
            scale = 2 * 1.01 * ((self.err_factor + 1e-12) * (ref + c) + gap)

            def work(j, g, left=left, ac=ac, scale=scale, s=s, tc=tc):
                P = np.matmul(left, self.X32[:, g], out=out[j][: len(left)])
                running_margins(
                    P[:k], P[k:], ac, self.labels[g], self.norms[g], scale,
                    correct[s : s + tc, g], uncertain[:tc, g],
                )  # fmt: skip

            each_group(work)
            yield s, uncertain[:tc]


def _blas_threads() -> int:
    """Threads the BLAS library may use here (1 under ``threadpool_limits(1)``)."""
    counts = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return max(1, min(counts, default=1))


def _uncertain(uncertain: np.ndarray):
    """(row, sample indices) of each row of the boolean array ``uncertain`` that has any."""
    rows, cols = np.divmod(np.flatnonzero(uncertain), uncertain.shape[1])
    if len(rows) == 0:
        return
    splits = np.flatnonzero(np.diff(rows)) + 1
    for r, c in zip(np.split(rows, splits), np.split(cols, splits), strict=True):
        yield int(r[0]), c
