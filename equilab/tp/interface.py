"""The single entry points that select a tensor-product method by name."""
from __future__ import annotations

import e3nn_jax as e3nn

from equilab.registry import SH_TP_METHODS, TP_METHODS


def tensor_product(x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, *, method: str = "cg", irreps_out=None, **kwargs) -> e3nn.IrrepsArray:
    """Product of two irreps arrays by the named method (``cg``, ``gaunt_s2grid``, ``gaunt_fourier``).

    Channel-wise when both inputs carry C channels (every irrep with multiplicity C); any
    broadcastable leading shape. ``irreps_out`` selects output irreps (multiplicities ignored).
    Extra keyword arguments go to the method (e.g. ``fft=False`` for ``gaunt_s2grid``).

    Examples:
        >>> import e3nn_jax as e3nn, jax.numpy as jnp
        >>> x = e3nn.IrrepsArray("1o", jnp.array([1.0, 0.0, 0.0]))
        >>> tensor_product(x, x, method="cg", irreps_out="0e").irreps
        1x0e
    """
    fn = TP_METHODS.get(method, field="tp.method")
    return fn(x1, x2, irreps_out=irreps_out, **kwargs)


def tensor_product_with_sh(x: e3nn.IrrepsArray, vectors, *, lmax: int, method: str = "cg", irreps_out=None) -> e3nn.IrrepsArray:
    """``x ⊗ Y(vectors)`` with edge spherical harmonics up to ``lmax`` (``component`` normalization).

    ``method``: ``cg`` (dense CG against the harmonics) or ``escn`` (rotate each edge onto the
    pole, one SO(2) map per m, rotate back); both give the same irreps, order and values, equal
    to ``e3nn.tensor_product(x, e3nn.spherical_harmonics(lmax, vectors, True))`` for one channel.

    Args:
        x: [..., irreps] features, C channels (every irrep with multiplicity C).
        vectors: [..., 3] edge vectors.
        irreps_out: output filter (multiplicities ignored).
    """
    fn = SH_TP_METHODS.get(method, field="tp.sh_method")
    return fn(x, vectors, lmax=lmax, irreps_out=irreps_out)
