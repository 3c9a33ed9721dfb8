"""Matérn GPs as state-space chains, exact against the dense GP (the functional Tucker prior)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from bayesplug.errors import InputError
from bayesplug.models.kalman import (
    backward_sample,
    information_filter,
    kalman_filter,
    rts_smoother,
)
from bayesplug.models.matern_sde import discretise, matern_sde, stationary_bridge

ELL, S2 = 0.3, 1.5


def matern(kernel, tau, ell=ELL, s2=S2):
    r = np.abs(tau) / ell
    if kernel == "matern12":
        return s2 * np.exp(-r)
    if kernel == "matern32":
        return s2 * (1 + np.sqrt(3) * r) * np.exp(-np.sqrt(3) * r)
    return s2 * (1 + np.sqrt(5) * r + 5 * r**2 / 3) * np.exp(-np.sqrt(5) * r)


@pytest.fixture(autouse=True)
def x64():
    with jax.enable_x64(True):
        yield


@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52"])
def test_the_chain_has_the_matern_covariance(kernel):
    sde = matern_sde(kernel, ELL, S2)
    deltas = np.array([0.0, 0.01, 0.1, 0.3, 1.0, 3.0])
    A, Q = discretise(sde, deltas)
    k = (sde.H @ A @ sde.P_inf @ sde.H.T)[:, 0, 0]
    np.testing.assert_allclose(k, matern(kernel, deltas), rtol=1e-9, atol=1e-10)
    # P_inf is stationary: F P + P F^T = -L q L^T, non-zero only in the last diagonal entry
    lyapunov = np.array(sde.F @ sde.P_inf + sde.P_inf @ sde.F.T)
    d = lyapunov.shape[0]
    assert lyapunov[d - 1, d - 1] < 0
    lyapunov[d - 1, d - 1] = 0.0
    np.testing.assert_allclose(lyapunov, 0.0, atol=1e-10)
    # every gap's process noise is a covariance (symmetric, PSD), zero at a zero gap
    assert np.all(np.linalg.eigvalsh(np.asarray(Q)) > -1e-10)
    np.testing.assert_allclose(Q[0], 0.0, atol=1e-12)


def test_unknown_kernel_is_named():
    with pytest.raises(InputError, match="no state-space form.*Known: .matern12."):
        matern_sde("matern23", 1.0, 1.0)


def dense_posterior(t, y, noise, t_new, kernel="matern32"):
    K = matern(kernel, t[:, None] - t[None, :])
    k_new = matern(kernel, t_new[:, None] - t[None, :])
    C = K + np.diag(noise)
    mean = k_new @ np.linalg.solve(C, y)
    var = matern(kernel, 0.0) - np.einsum("ij,ji->i", k_new, np.linalg.solve(C, k_new.T))
    log_lik = stats.multivariate_normal(np.zeros(len(t)), C).logpdf(y)
    return mean, var, log_lik


def smooth(kernel, t, y, noise):
    sde = matern_sde(kernel, ELL, S2)
    A, Q = discretise(sde, np.diff(t, prepend=t[0]))
    d = sde.F.shape[0]
    y, noise = jnp.asarray(y)[:, None], jnp.asarray(noise)[:, None, None]
    filtered = kalman_filter(jnp.zeros(d), sde.P_inf, A, Q, sde.H, y, noise)
    return sde, filtered, rts_smoother(filtered, A, Q)


@pytest.mark.parametrize("kernel", ["matern12", "matern32", "matern52"])
def test_kalman_and_rts_equal_dense_gp_conditioning(kernel):
    rng = np.random.default_rng(0)
    t = np.sort(rng.uniform(0, 2, 14))
    y = np.sin(4 * t) + rng.normal(0, 0.3, t.size)
    noise = rng.uniform(0.05, 0.3, t.size)  # a different variance at every input
    _, filtered, smoothed = smooth(kernel, t, y, noise)
    mean, var, log_lik = dense_posterior(t, y, noise, t, kernel)
    np.testing.assert_allclose(smoothed.mean[:, 0], mean, atol=1e-9)
    np.testing.assert_allclose(smoothed.cov[:, 0, 0], var, atol=1e-9)
    np.testing.assert_allclose(float(filtered.log_likelihood), log_lik, rtol=1e-10)
    # the lag-one cross-covariance of f against the dense posterior covariance
    K = matern(kernel, t[:, None] - t[None, :])
    post = K - K @ np.linalg.solve(K + np.diag(noise), K)
    np.testing.assert_allclose(smoothed.cross_cov[:, 0, 0], np.diag(post, -1), atol=1e-9)


def test_prediction_between_and_beyond_inputs_equals_dense_conditioning():
    """f at new points from the neighbouring smoothed states (the state-space bridge)."""
    rng = np.random.default_rng(1)
    t = np.sort(rng.uniform(0, 2, 12))
    y = np.cos(3 * t) + rng.normal(0, 0.2, t.size)
    noise = np.full(t.size, 0.04)
    sde, _, smoothed = smooth("matern32", t, y, noise)
    t_new = np.array([t[0] - 0.4, t[0] - 0.01, 0.5 * (t[3] + t[4]), t[-1] + 0.05, t[-1] + 2.0])
    mean, var, _ = dense_posterior(t, y, noise, t_new)
    for x, m_ref, v_ref in zip(t_new, mean, var, strict=True):
        j = int(np.searchsorted(t, x))  # right neighbour index
        left = j - 1 if j > 0 else None
        right = j if j < t.size else None
        gap_l = x - t[left] if left is not None else jnp.inf
        gap_r = t[right] - x if right is not None else jnp.inf
        W_l, W_r, cov = stationary_bridge(sde, gap_l, gap_r)
        idx = [i for i in (left, right) if i is not None]
        W = jnp.concatenate([w for w, i in ((W_l, left), (W_r, right)) if i is not None], axis=1)
        m = jnp.concatenate([smoothed.mean[i] for i in idx])
        # the joint smoothed covariance of the (one or two) neighbouring states
        if len(idx) == 2:
            c = smoothed.cross_cov[left]  # Cov(s_right, s_left)
            joint = jnp.block([[smoothed.cov[left], c.T], [c, smoothed.cov[right]]])
        else:
            joint = smoothed.cov[idx[0]]
        pred_mean = (W @ m)[0]
        pred_var = (cov + W @ joint @ W.T)[0, 0]
        np.testing.assert_allclose(pred_mean, m_ref, atol=1e-9)
        np.testing.assert_allclose(pred_var, v_ref, atol=1e-9)
        assert np.all(np.linalg.eigvalsh(np.asarray(cov)) > -1e-12)  # PSD on both sides


def test_information_filter_equals_the_covariance_form_and_skips_empty_messages():
    rng = np.random.default_rng(2)
    t = np.sort(rng.uniform(0, 2, 10))
    y = np.sin(4 * t) + rng.normal(0, 0.3, t.size)
    noise = rng.uniform(0.05, 0.3, t.size)
    sde, filtered, smoothed = smooth("matern52", t, y, noise)
    A, Q = discretise(sde, np.diff(t, prepend=t[0]))
    precision = jnp.asarray(1 / noise)[:, None, None]
    shift = jnp.asarray(y / noise)[:, None]
    info = information_filter(jnp.zeros(3), sde.P_inf, A, Q, sde.H, precision, shift)
    np.testing.assert_allclose(info.mean, filtered.mean, atol=1e-10)
    np.testing.assert_allclose(info.cov, filtered.cov, atol=1e-10)
    # a zero message is no observation: the dense posterior without that point
    precision = precision.at[4].set(0.0)
    shift = shift.at[4].set(0.0)
    info = rts_smoother(
        information_filter(jnp.zeros(3), sde.P_inf, A, Q, sde.H, precision, shift), A, Q
    )
    keep = np.arange(t.size) != 4
    mean, var, _ = dense_posterior(t[keep], y[keep], noise[keep], t, "matern52")
    np.testing.assert_allclose(info.mean[:, 0], mean, atol=1e-9)
    np.testing.assert_allclose(info.cov[:, 0, 0], var, atol=1e-9)


def test_backward_sampling_draws_the_smoothed_joint_law():
    rng = np.random.default_rng(3)
    t = np.sort(rng.uniform(0, 2, 6))
    y = np.cos(3 * t) + rng.normal(0, 0.2, t.size)
    sde, filtered, smoothed = smooth("matern32", t, y, np.full(t.size, 0.04))
    A, _ = discretise(sde, np.diff(t, prepend=t[0]))
    draws = np.asarray(backward_sample(jax.random.PRNGKey(0), filtered, A, 40_000))[..., 0]
    K = matern("matern32", t[:, None] - t[None, :])
    post = K - K @ np.linalg.solve(K + 0.04 * np.eye(t.size), K)
    sd = np.sqrt(np.diag(post))
    # 40,000 draws: the mean's MC error is sd / 200, a covariance's about sd_i sd_j / 141
    np.testing.assert_allclose(draws.mean(0), smoothed.mean[:, 0], atol=float(5 * sd.max() / 200))
    np.testing.assert_allclose(np.cov(draws.T), post, atol=float(5 * sd.max() ** 2 / 141))
