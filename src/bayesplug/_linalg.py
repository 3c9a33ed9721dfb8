"""Small dense factorisations written in plain JAX (``lax.fori_loop``), no LAPACK calls.

Why not ``jnp.linalg.cholesky``: on CPU, jaxlib 0.10's batched LAPACK kernels (``potrf``,
``trsm``) split their batch over XLA's intra-op thread pool and block until the pieces are done
(``jax::ParallelBatchMap`` -> ``BlockingCounter::Wait``). When as many such calls run at once as
the pool has threads (2 on a 2-core machine: two independent triangular solves of a gradient are
enough), every pool thread waits for work queued behind it and the process hangs at 0% CPU for
good. Seen with gdb on the sparse GP's training step (B = 256 matrices of 16 x 16, float32); the
XLA flags ``xla_cpu_multi_thread_eigen``, ``xla_cpu_use_thunk_runtime`` and
``xla_cpu_enable_concurrency_optimized_scheduler`` do not prevent it. These loops are O(n³) like
LAPACK, fine for the small matrices (inducing subsets, state covariances) they are used on;
:func:`cholesky_inverse` gives them a closed-form derivative so that ``grad`` does not unroll them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = [
    "LAPACK_PRIMITIVES",
    "cholesky",
    "cholesky_inverse",
    "gaussian_log_density",
    "one_at_a_time",
    "solve_lower",
    "solve_upper",
    "uses_lapack",
]

# JAX primitives that lower to LAPACK custom calls on CPU (jax 0.10)
LAPACK_PRIMITIVES = frozenset(
    {
        "cholesky",
        "triangular_solve",
        "lu",
        "eigh",
        "eig",
        "svd",
        "qr",
        "geqrf",
        "geqp3",
        "householder_product",
        "schur",
        "hessenberg",
        "tridiagonal",
        "tridiagonal_solve",
    }
)


def cholesky(a):
    """Lower Cholesky factor of a symmetric positive-definite ``a`` (NaN where it is not)."""
    a = jnp.asarray(a)
    n = a.shape[-1]
    index = jnp.arange(n)

    def column(j, factor):
        s = a[:, j] - factor @ factor[j]  # columns >= j of factor are still zero
        d = jnp.sqrt(s[j])
        return factor.at[:, j].set(jnp.where(index > j, s / d, jnp.where(index == j, d, 0.0)))

    return jax.lax.fori_loop(0, n, column, jnp.zeros_like(a))


def solve_lower(factor, b):
    """``factor⁻¹ b`` for lower-triangular ``factor`` (forward substitution; b vector or matrix)."""
    n = factor.shape[-1]

    def row(i, x):
        return x.at[i].set((b[i] - factor[i] @ x) / factor[i, i])

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))


def solve_upper(factor, b):
    """``factor⁻ᵀ b`` for lower-triangular ``factor`` (back substitution with its transpose)."""
    n = factor.shape[-1]

    def row(k, x):
        i = n - 1 - k
        return x.at[i].set((b[i] - factor[:, i] @ x) / factor[i, i])

    return jax.lax.fori_loop(0, n, row, jnp.zeros_like(b))


@jax.custom_jvp
def cholesky_inverse(a):
    """``(L⁻¹, log det a)`` for symmetric positive-definite ``a`` = L Lᵀ, batched over leading axes.

    The forward pass runs the loops above (no LAPACK); the derivative is written in closed form,
    so reverse mode never unrolls them: with Φ(M) the lower triangle of M with its diagonal
    halved, d(L⁻¹) = -Φ(L⁻¹ dA L⁻ᵀ) L⁻¹ and d log det A = tr(A⁻¹ dA) (Murray, "Differentiation
    of the Cholesky decomposition", 2016, eq. 10). Valid for symmetric tangents dA, which is what
    a covariance built from parameters has. Several times faster under ``grad`` than
    differentiating the loops (B = 256 matrices of 16 x 16: 1.3 ms against 4.4 ms a step).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> inverse, log_det = cholesky_inverse(jnp.array([[4.0, 2.0], [2.0, 2.0]]))
    >>> inverse.round(3).tolist(), round(float(log_det), 4)
    ([[0.5, 0.0], [-0.5, 1.0]], 1.3863)
    """
    square = a.reshape(-1, *a.shape[-2:])
    factor = jax.vmap(cholesky)(square)
    eye = jnp.eye(a.shape[-1], dtype=a.dtype)
    inverse = jax.vmap(lambda f: solve_lower(f, eye))(factor).reshape(a.shape)
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factor, axis1=-2, axis2=-1)), -1)
    return inverse, log_det.reshape(a.shape[:-2])


@cholesky_inverse.defjvp
def _cholesky_inverse_jvp(primals, tangents):
    (a,), (da,) = primals, tangents
    inverse, log_det = cholesky_inverse(a)
    inverse_t = jnp.swapaxes(inverse, -1, -2)
    middle = inverse @ da @ inverse_t
    phi = jnp.tril(middle) - 0.5 * jnp.eye(a.shape[-1], dtype=a.dtype) * middle
    return (inverse, log_det), (-phi @ inverse, jnp.sum((inverse_t @ inverse) * da, (-2, -1)))


@jax.custom_jvp
def gaussian_log_density(residual, covariance):
    """log N(residual; 0, covariance) for a symmetric positive-definite ``covariance``, no LAPACK.

    ``-(rᵀ K⁻¹ r + log det K + n log 2π) / 2`` from the plain-JAX Cholesky factor above (NaN where
    K is not positive definite), so a batch of evaluations (nested sampling's slice chains)
    vectorises instead of running LAPACK one matrix at a time. The derivative is in closed form
    (with α = K⁻¹ r: d = -αᵀ dr + ½ αᵀ dK α - ½ tr(K⁻¹ dK), Rasmussen & Williams 2006, eq. 5.9),
    so ``grad`` does not unroll the loops; the forward pass alone solves one vector.

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> round(float(gaussian_log_density(jnp.array([1.0, 0.0]), jnp.eye(2) * 2.0)), 4)
    -2.781
    """
    return _gaussian_log_density(jnp.asarray(residual), jnp.asarray(covariance))


@jax.jit  # traced once per shape: a program evaluating it at many sites is traced faster
def _gaussian_log_density(residual, covariance):
    factor = cholesky(covariance)
    white = solve_lower(factor, residual)
    n = residual.shape[-1]
    log_det = 2.0 * jnp.sum(jnp.log(jnp.diagonal(factor)))
    return -0.5 * (white @ white + log_det + n * jnp.log(2.0 * jnp.pi))


@gaussian_log_density.defjvp
def _gaussian_log_density_jvp(primals, tangents):
    (residual, covariance), (d_residual, d_covariance) = primals, tangents
    inverse_factor, log_det = cholesky_inverse(covariance)
    precision = inverse_factor.T @ inverse_factor
    alpha = precision @ residual
    n = residual.shape[-1]
    value = -0.5 * (residual @ alpha + log_det + n * jnp.log(2.0 * jnp.pi))
    tangent = (
        -alpha @ d_residual
        + 0.5 * alpha @ d_covariance @ alpha
        - 0.5 * jnp.sum(precision * d_covariance)
    )
    return value, tangent


def uses_lapack(fn, *args) -> bool:
    """Whether ``fn(*args)`` traces to a LAPACK-backed primitive (:data:`LAPACK_PRIMITIVES`),
    looking inside every sub-program (``jit``, ``cond``, ``scan``, custom derivatives).

    Examples
    --------
    >>> import jax.numpy as jnp
    >>> uses_lapack(lambda a: jnp.linalg.cholesky(a).sum(), jnp.eye(2))
    True
    >>> uses_lapack(lambda a: cholesky(a).sum(), jnp.eye(2))
    False
    """
    import jax.extend.core as jex

    def walk(jaxpr) -> bool:
        for eqn in jaxpr.eqns:
            if eqn.primitive.name in LAPACK_PRIMITIVES:
                return True
            for value in eqn.params.values():
                for item in value if isinstance(value, tuple | list) else (value,):
                    inner = getattr(item, "jaxpr", item)
                    if isinstance(inner, jex.Jaxpr) and walk(inner):
                        return True
        return False

    return walk(jax.make_jaxpr(fn)(*args).jaxpr)


def one_at_a_time(fn):
    """``fn`` whose ``vmap`` runs the batch in sequence (``lax.map``) instead of batching it.

    The cure for the deadlock in the module docstring where the caller cannot avoid batching:
    a batched program then calls LAPACK on one matrix at a time, never splitting a batch over
    the thread pool. Arguments may be traced (passed, not closed over); forward evaluation only
    (no derivative rule), as nested sampling needs.

    Examples
    --------
    >>> import jax, jax.numpy as jnp
    >>> f = one_at_a_time(lambda a, c: jnp.linalg.slogdet(a)[1] + c)
    >>> values = jax.vmap(f, in_axes=(0, None))(jnp.stack([jnp.eye(2), 2.0 * jnp.eye(2)]), 1.0)
    >>> [round(float(v), 4) for v in values]
    [1.0, 2.3863]
    """

    @jax.custom_batching.custom_vmap
    def wrapped(*args):
        return fn(*args)

    @wrapped.def_vmap
    def _sequential(axis_size, in_batched, *args):
        leaves, tree = jax.tree.flatten(args)
        flags = jax.tree.leaves(in_batched)

        def one(batch):
            items = iter(batch)
            pairs = zip(leaves, flags, strict=True)
            chosen = [next(items) if flag else leaf for leaf, flag in pairs]
            return fn(*jax.tree.unflatten(tree, chosen))

        out = jax.lax.map(one, [leaf for leaf, flag in zip(leaves, flags, strict=True) if flag])
        return out, jax.tree.map(lambda _: True, out)

    return wrapped
