"""Flax shell around :func:`equilab.tp.tensor_product`: learnable mixing before and after.

``TensorProduct(irreps_out, method)``: ``y = Lin_out(w ⊙ T_method(Lin_1(x1), Lin_2(x2)))`` with
e3nn-jax equivariant ``Linear`` layers (one weight per path of each linear map) and, for
``cg``, one learnable weight per CG path ``w`` (initialised to 1). The Gaunt methods have no
separable paths (one product of two spherical functions), so they have no ``w``; their
parameters are identical, and ``gaunt_s2grid`` and ``gaunt_fourier`` give the same output for
the same parameters.
"""
from __future__ import annotations

from typing import Optional

import e3nn_jax as e3nn
import flax.linen as nn
import jax.numpy as jnp

from equilab.tp import tensor_product

METHODS_WITH_PATHS = ("cg",)


class TensorProduct(nn.Module):
    """Weighted tensor product ``x1 ⊗ x2 -> irreps_out``.

    Attributes:
        irreps_out: output irreps of the module (with multiplicities), a string.
        method: ``cg`` | ``gaunt_s2grid`` | ``gaunt_fourier``.
        mix_inputs: learnable ``Linear`` on each input first (keeps the input irreps).
        product_irreps: irreps filter of the product (default: the distinct irreps of
            ``irreps_out``).

    Shapes: x1 [..., C x irreps1], x2 [..., C x irreps2] (channel-wise, or one of them one
    channel) -> [..., irreps_out].
    """

    irreps_out: str
    method: str = "cg"
    mix_inputs: bool = True
    product_irreps: Optional[str] = None

    @nn.compact
    def __call__(self, x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        if self.mix_inputs:
            x1 = e3nn.flax.Linear(x1.irreps, force_irreps_out=True, name="linear_1")(x1)
            x2 = e3nn.flax.Linear(x2.irreps, force_irreps_out=True, name="linear_2")(x2)
        filt = self.product_irreps or e3nn.Irreps([(1, ir) for ir in sorted({ir for _, ir in e3nn.Irreps(self.irreps_out)})])
        y = tensor_product(x1, x2, method=self.method, irreps_out=filt)
        if self.method in METHODS_WITH_PATHS and y.irreps.dim > 0:
            # merged irreps of n paths: channel index = path·C + c; one weight per path
            C = max(mul for mul, _ in x1.irreps) if x1.irreps.dim else 1
            C = max(C, max(mul for mul, _ in x2.irreps) if x2.irreps.dim else 1)
            n_paths = [mul // C for mul, _ in y.irreps]
            w = self.param("path_weights", nn.initializers.ones, (sum(n_paths),), y.dtype)
            chunks, start = [], 0
            for n, chunk in zip(n_paths, y.chunks):
                wc = jnp.repeat(w[start : start + n], C)
                chunks.append(None if chunk is None else chunk * wc[:, None])
                start += n
            y = e3nn.from_chunks(y.irreps, chunks, y.shape[:-1], y.dtype)
        return e3nn.flax.Linear(self.irreps_out, force_irreps_out=True, name="linear_out")(y)
