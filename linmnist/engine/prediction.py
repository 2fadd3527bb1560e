"""SGD's expected learning curves, predicted from the data before anything is trained.

The mean of W_t is the gradient-descent iterate mu_t and the losses are quadratic, so with
c_k(t) = sum over rows of Var((W_t - mu_t) v_k) in the eigenbasis (lam_k, v_k) of S,

    E[L(W_t)]      = L(mu_t)      + 0.5 sum_k lam_k c_k(t),
    E[L_test(W_t)] = L_test(mu_t) + 0.5 sum_k s_k c_k(t),       s_k = v_k^T S_test v_k,

L(mu_t) in closed form (``spectrum.gd_excess``). The approximation is all in c(t):
``noise_floor``'s diagonal recursion (off-diagonal covariances dropped in the test loss too).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numba
import numpy as np
import pandas as pd

from linmnist.engine.evaluation import check_data
from linmnist.engine.kernel_cache import heal_on_damage
from linmnist.engine.noise_floor import FloorModel, noise_covariance, sigma_trajectory
from linmnist.engine.spectrum import Spectrum, gd_excess, gd_steps_to, second_moments
from linmnist.engine.validation import UsageError, check_int, check_number

# Checkpoints of the gradient noise along the gradient-descent path of a whole curve.
CURVE_CHECKPOINTS = 24
CURVE_COLUMNS = ["batch_size", "iteration", "train_loss", "test_loss"]
# ``predicted_steps`` follows the expected excess up to this many times gradient descent's
# steps to the last target (the expected excess is never below gradient descent's).
HORIZON_FACTOR = 4


@dataclass(frozen=True)
class HeldOut:
    """The test set's quadratic loss: L_test(W) = 0.5 tr(W S W^T) - tr(W C^T) + loss_zero."""

    S: np.ndarray  # (D, D) X_test X_test^T / N_test
    C: np.ndarray  # (10, D) Y_test X_test^T / N_test
    loss_zero: float  # L_test(0) = 0.5 ||Y_test||^2 / N_test


def held_out(X_test: np.ndarray, Y_test: np.ndarray) -> HeldOut:
    """The ``HeldOut`` moments of a test set (float64; shared by every training subset)."""
    X_test, Y_test = check_data(X_test, Y_test, "X_test", "Y_test")
    S, C = second_moments(X_test, Y_test)
    loss_zero = 0.5 * float(np.sum(np.square(Y_test, dtype=np.float64))) / X_test.shape[1]
    return HeldOut(S=S, C=C, loss_zero=loss_zero)


def expected_losses(spec: Spectrum, model: FloorModel, *, lr: float,
                    batch_size: int | Sequence[int], iterations: Sequence[int],
                    test: HeldOut | None = None) -> pd.DataFrame:  # fmt: skip
    """The expected training (and ``test``) loss of SGD from W = 0 at each of ``iterations``, for
    one batch size or several: ``CURVE_COLUMNS``, inf where it diverges."""
    lr = check_number("lr", lr, low=0, low_open=True)
    sizes = [check_int("batch_size", b, low=1) for b in np.atleast_1d(batch_size).tolist()]
    its = np.asarray(iterations, dtype=np.int64).reshape(-1)
    if its.size == 0 or its[0] < 0 or np.any(np.diff(its) <= 0):
        raise ValueError(f"iterations must be ascending distinct ints >= 0, got {iterations}")
    steps = its + 1
    # Above 2 / lambda_max gradient descent, the mean of SGD, overflows: so does the curve.
    with np.errstate(over="ignore", invalid="ignore"):
        sigma = sigma_trajectory(
            model, lr=lr, iterations=int(steps[-1]), checkpoints=CURVE_CHECKPOINTS
        )
        c = noise_covariance(model, lr=lr, batch_size=sizes, steps=steps, sigma=sigma)
        train = (spec.loss_star + gd_excess(spec, lr, steps))[:, None] + 0.5 * np.einsum(
            "tkb,k->tb", c, model.lam
        )
        test_loss = np.full_like(train, np.nan)
        if test is not None:
            test_loss = _expected_test_loss(spec, test, c, lr, steps)
    train = np.where(np.isfinite(train), train, np.inf)
    if test is not None:
        test_loss = np.where(np.isfinite(test_loss), test_loss, np.inf)
    return pd.DataFrame(
        {
            "batch_size": np.repeat(sizes, len(its)),
            "iteration": np.tile(its, len(sizes)),
            "train_loss": train.T.reshape(-1),
            "test_loss": test_loss.T.reshape(-1),
        }
    )


def _expected_test_loss(spec: Spectrum, test: HeldOut, c, lr: float, steps) -> np.ndarray:
    """The expected test loss at every t of ``steps`` (rows) and batch size (columns) from
    ``noise_covariance``'s c and the test moments S, C in S's eigenbasis (on the pixels in use):
    L_test(mu_t) - L_test(0) = 0.5 P_t A P_t - P_t b, P_t = 1 - (1 - lr lam)^t,
    A = (U*^T U*) * S and b = sum_c U*_c C_c."""
    live = spec.lam > 0
    V = spec.V[:, live]
    rows = np.flatnonzero(np.any(V, axis=1))
    Vr = V[rows]
    S, C = Vr.T @ test.S[np.ix_(rows, rows)] @ Vr, test.C[:, rows] @ Vr
    U = spec.W_star @ V
    A = (U.T @ U) * S
    b = np.sum(U * C, axis=0)
    P = 1.0 - (1.0 - lr * spec.lam[live])[None, :] ** steps[:, None].astype(np.float64)
    gd_test = 0.5 * np.einsum("tk,tk->t", P @ A, P) - P @ b + test.loss_zero
    return gd_test[:, None] + 0.5 * np.einsum("tkb,k->tb", c, np.diag(S))


def expected_excess(spec: Spectrum, model: FloorModel, *, lr: float, batch_size: int,
                    iterations: int, sigma: tuple[np.ndarray, np.ndarray] | None = None
) -> np.ndarray:  # fmt: skip
    """E[L(W_t)] - L* after t = 1 .. ``iterations`` updates of SGD from W = 0, one batch size
    (inf where it diverges): ``expected_losses``' approximation solved in the eigenbasis of
    the recursion's symmetric T = diag((1 - a lam)^2 - (a^2 / B) lam^2) + (a^2 / B) Q, K work
    a step; ``sigma`` by default ``sigma_trajectory(model, lr=lr, iterations=iterations)``."""
    a = check_number("lr", lr, low=0, low_open=True)
    b = check_int("batch_size", batch_size, low=1)
    iterations = check_int("iterations", iterations, low=1)
    if sigma is None:
        sigma = sigma_trajectory(model, lr=a, iterations=iterations)
    checkpoints, sigmas = sigma
    noise = a * a / b
    T = noise * model.Q
    T[np.diag_indices_from(T)] += (1.0 - a * model.lam) ** 2 - noise * model.lam**2
    mu, P = np.linalg.eigh(T)
    live = spec.weights > 0
    out = np.empty(iterations)
    with np.errstate(over="ignore", invalid="ignore"):  # above 2 / lambda_max: inf or nan
        source = noise * sigmas @ P  # the gradient noise at each checkpoint, in T's eigenbasis
        _excess_steps(mu, source, 0.5 * model.lam @ P, checkpoints.astype(np.float64),
                      (1.0 - a * spec.lam[live]) ** 2, spec.weights[live], out)  # fmt: skip
    return np.where(np.isfinite(out), out, np.inf)


@numba.njit(cache=True, nogil=True)
def _excess_steps(mu, source, weight, checkpoints, factor, gd_weight, out):  # pragma: no cover
    """out[t] = weight . y(t + 1) + gd_weight . factor^(t + 1), y(t + 1) = mu * y(t) + the
    source interpolated at t between its checkpoints, y(0) = 0: the recursion in T's
    eigenbasis plus gradient descent's excess."""
    y = np.zeros(mu.shape[0])
    gd = gd_weight.copy()
    j = 0
    for t in range(out.shape[0]):
        while j + 1 < checkpoints.shape[0] - 1 and checkpoints[j + 1] <= t:
            j += 1
        w = (t - checkpoints[j]) / (checkpoints[j + 1] - checkpoints[j])
        total = 0.0
        for k in range(mu.shape[0]):
            y[k] = mu[k] * y[k] + (1.0 - w) * source[j, k] + w * source[j + 1, k]
            total += weight[k] * y[k]
        for k in range(gd.shape[0]):
            gd[k] *= factor[k]
            total += gd[k]
        out[t] = total


heal_on_damage(_excess_steps)


def predicted_steps(spec: Spectrum, model: FloorModel, *, lr: float, batch_size: int,
                    targets: Sequence[float], max_steps: int,
                    sigma: tuple[np.ndarray, np.ndarray] | None = None
) -> tuple[int | None, ...]:  # fmt: skip
    """Per target (decreasing), the first step where SGD's expected excess reaches it, or None."""
    values = [check_number("targets", t, low=0, low_open=True) for t in targets]
    if not values or sorted(values, reverse=True) != values:
        raise UsageError(f"targets must be excess losses > 0, decreasing; got {list(targets)}")
    horizon = predicted_horizon(spec, lr=lr, target=values[-1], max_steps=max_steps)
    excess = expected_excess(
        spec, model, lr=lr, batch_size=batch_size, iterations=horizon, sigma=sigma
    )
    hits = [np.flatnonzero(excess <= target) for target in values]
    return tuple(int(hit[0]) + 1 if hit.size else None for hit in hits)


def predicted_horizon(spec: Spectrum, *, lr: float, target: float, max_steps: int) -> int:
    """``HORIZON_FACTOR`` x gradient descent's steps to ``target``, in [1, ``max_steps``]."""
    max_steps = check_int("max_steps", max_steps, low=1)
    gd = gd_steps_to(spec, lr, target, max_steps=max_steps)
    return max_steps if gd is None else max(1, min(max_steps, HORIZON_FACTOR * gd))
