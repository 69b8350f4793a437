"""EGNN property regressor for QM9 (Satorras et al. 2021; EDM's property evaluator), dense layout.

The QM9 EGNN of the EGNN paper, as EDM uses it to score property-conditioned samples
(``qm9/property_prediction/models_property.py``): coordinates are *not* updated, so the network
is an invariant message-passing network on squared distances.  Per layer l, over all pairs
i ≠ j of real atoms:
    m_ij = φ_e(h_i, h_j, ‖x_i − x_j‖²) · σ(w·φ_e(…))          (attention gate)
    h_i ← h_i + φ_h(h_i, Σ_j m_ij)
Readout: ŷ = φ_g(pool_i φ_n(h_i)) with pool = sum (EDM) or mean over real atoms.  The output is a
scalar per molecule, invariant under rotations, reflections, translations and permutations of
the atoms.  Node input: the one-hot atom type (EDM's ``in_node_nf=5``).
"""
from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from equilab.errors import ConfigError
from equilab.models.egnn import TorchDense
from equilab.registry import MODELS

POOLINGS = ("sum", "mean")


class EGNNProperty(nn.Module):
    """Dense batch -> ``{"property": (B,)}`` (the normalised property, see the task).

    Input batch: ``positions`` (B, N, 3), ``one_hot`` (B, N, T), ``node_mask`` (B, N) bool.

    Attributes:
        hidden: width of h and the MLPs (EDM: 128).  n_layers: message-passing layers (EDM: 7).
        attention: gate each message by σ(Linear(m_ij)) (EDM: on).
        pooling: ``sum`` (EDM) or ``mean`` over real atoms.
    """

    hidden: int = 128
    n_layers: int = 7
    attention: bool = True
    pooling: str = "sum"

    @nn.compact
    def __call__(self, batch, train: bool = False):
        x = jnp.asarray(batch["positions"])
        dtype = x.dtype
        h0 = jnp.asarray(batch["one_hot"], dtype)
        mask = jnp.asarray(batch["node_mask"]).astype(bool)
        n = x.shape[1]
        nm = mask[..., None].astype(dtype)
        em = (mask[:, :, None] & mask[:, None, :] & ~jnp.eye(n, dtype=bool))[..., None].astype(dtype)
        diff = x[:, :, None, :] - x[:, None, :, :]
        d2 = (diff**2).sum(-1, keepdims=True)  # squared distance, as EGNN's coord2radial
        act = nn.silu
        h = TorchDense(self.hidden, name="embedding")(h0) * nm
        for l in range(self.n_layers):
            # φ_e's first layer on [h_i, h_j, d²] applied per node, then broadcast over pairs:
            # the same affine map without a (B, N, N, 2H+1) matmul.
            F = h.shape[-1]
            w = self.param(f"edge_{l}_0_kernel", nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform"),
                           (2 * F + 1, self.hidden), dtype)
            bound = 1.0 / np.sqrt(w.shape[0])
            b = self.param(f"edge_{l}_0_bias", lambda k, s, d: jax.random.uniform(k, s, d, -bound, bound),
                           (self.hidden,), dtype)
            m = act((h @ w[:F])[:, :, None, :] + (h @ w[F:2 * F])[:, None, :, :] + d2 * w[2 * F] + b)
            m = act(TorchDense(self.hidden, name=f"edge_{l}_1")(m))
            if self.attention:
                m = m * nn.sigmoid(TorchDense(1, name=f"att_{l}")(m))
            agg = (m * em).sum(2)
            o = act(TorchDense(self.hidden, name=f"node_{l}_0")(jnp.concatenate([h, agg], -1)))
            h = (h + TorchDense(self.hidden, name=f"node_{l}_1")(o)) * nm
        h = TorchDense(self.hidden, name="node_dec_1")(act(TorchDense(self.hidden, name="node_dec_0")(h))) * nm
        pooled = h.sum(1)
        if self.pooling == "mean":
            pooled = pooled / jnp.maximum(nm.sum(1), 1.0)
        y = TorchDense(1, name="graph_dec_1")(act(TorchDense(self.hidden, name="graph_dec_0")(pooled)))
        return {"property": y[:, 0]}


@MODELS.register("egnn_property")
def build(cfg: dict, data) -> EGNNProperty:
    """cfg: hidden, n_layers, attention, pooling (sum | mean)."""
    cfg = dict(cfg)
    pooling = cfg.pop("pooling", "sum")
    if pooling not in POOLINGS:
        raise ConfigError(f"model.pooling must be one of {POOLINGS}, got {pooling!r}")
    return EGNNProperty(hidden=int(cfg.pop("hidden", 128)), n_layers=int(cfg.pop("n_layers", 7)),
                        attention=bool(cfg.pop("attention", True)), pooling=pooling, **cfg)
