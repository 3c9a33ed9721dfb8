"""The ``ppg`` backend's pure kernel (``init`` / ``build_kernel``): shapes, jit and vmap, each
mode's θ update by hand. The statistical checks (PPG against Kalman, the Kalman MLE and NUTS)
are in test_state_space."""

import jax
import numpy as np
import numpyro.distributions as dist
import optax
import pytest

import bayesplug as bp
from bayesplug.inference import particle_gibbs as ppg

T, N = 15, 16


@pytest.fixture(scope="module")
def problem():
    lg = bp.models.LinearGaussianSSM(A=dist.Uniform(0.0, 1.0), Q=0.5, C=1.0, R=0.3)
    y = bp.models.LinearGaussianSSM(A=0.8, Q=0.5, C=1.0, R=0.3).simulate(jax.random.PRNGKey(0), T)[
        "y"
    ]
    return lg, y, ppg.Parameters.of(lg, None)


def test_parameters_map_between_scales(problem):
    lg, _, params = problem
    eta = params.unconstrain({"A": 0.25})
    assert float(eta["A"]) == pytest.approx(np.log(0.25 / 0.75))  # logit of the Uniform(0, 1)
    assert float(params.theta(eta)["A"]) == pytest.approx(0.25)
    assert params.theta(eta)["Q"] == 0.5  # fixed values pass through


@pytest.mark.parametrize("mode", ppg.MODES)
def test_one_step_in_each_mode_keeps_shapes_and_is_jittable(problem, mode):
    lg, y, params = problem
    eta = params.unconstrain({"A": 0.5})
    optimizer = optax.sgd(0.1)
    state, increments = ppg.init(jax.random.key(1), lg, y, params, eta, mode, optimizer,
                                 num_particles=N)  # fmt: skip
    assert state.reference.shape == (T, 1) and increments.shape == (T,)
    step = ppg.build_kernel(lg, y, params, mode, optimizer=optimizer, num_particles=N)
    new, info = jax.jit(step)(jax.random.key(2), state)
    assert new.reference.shape == (T, 1) and int(new.iteration) == 1
    assert np.array_equal(new.reference, info.x)
    assert bool(info.increments_ok) and np.isfinite(float(info.log_likelihood))
    moved = float(new.eta["A"]) != float(eta["A"])
    assert moved == (mode != "smooth")  # only the smoother leaves θ alone
    if mode == "gibbs":
        assert 0.0 <= float(info.theta_acceptance) <= 1.0
    else:
        assert float(info.theta_acceptance) == 1.0


def test_score_climbing_takes_the_gradient_at_the_new_path(problem):
    lg, y, params = problem
    eta = params.unconstrain({"A": 0.5})
    rate = 0.1
    optimizer = optax.sgd(rate)
    state, _ = ppg.init(jax.random.key(1), lg, y, params, eta, "score_climbing", optimizer,
                        num_particles=N)  # fmt: skip
    step = ppg.build_kernel(lg, y, params, "score_climbing", optimizer=optimizer, num_particles=N)
    new, info = step(jax.random.key(2), state)

    def log_joint(e):
        return lg.joint_log_density(params.theta(e), info.x, y)

    expected = eta["A"] + rate * jax.grad(log_joint)(eta)["A"]
    assert float(new.eta["A"]) == pytest.approx(float(expected), rel=1e-6)


def test_the_kernel_vmaps_over_chains_like_the_backend(problem):
    lg, y, params = problem
    eta = params.unconstrain({"A": 0.5})
    keys = jax.random.split(jax.random.key(3), 3)
    states, _ = jax.vmap(lambda k: ppg.init(k, lg, y, params, eta, "gibbs", num_particles=N))(keys)
    step = ppg.build_kernel(lg, y, params, "gibbs", num_particles=N)
    new, info = jax.jit(jax.vmap(step))(jax.random.split(jax.random.key(4), 3), states)
    assert new.reference.shape == (3, T, 1) and info.theta["A"].shape == (3,)
    assert np.all((info.theta["A"] > 0) & (info.theta["A"] < 1))


def test_an_unknown_mode_is_refused(problem):
    lg, y, params = problem
    with pytest.raises(bp.InputError, match="mode"):
        ppg.build_kernel(lg, y, params, "sampling")
