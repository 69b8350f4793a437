"""EGNN dynamics for E(3) diffusion and flow matching (EDM's ``EGNN_dynamics_QM9``), dense layout.

Molecules are fully connected, so every array is dense over (B, N) nodes and (B, N, N) pairs with
a node mask; padded atoms and the diagonal get no messages and send none.

Per layer l, with d_ij = |x_i − x_j|², d⁰_ij the input distances and masks applied throughout:
    m_ij = φ_e(h_i, h_j, d_ij, d⁰_ij) · σ(w·m_ij)          (attention gate, as EDM)
    h_i ← h_i + φ_h(h_i, Σ_j m_ij / Z)
    x_i ← x_i + Σ_j (x_i − x_j)/(√(d_ij+ε) + 1) · r·tanh(φ_x(m_ij)) / Z
Outputs: v_i = x_i^L − x_i^0 projected to zero centre of mass (E(3)-equivariant, translation
invariant) and an invariant feature output φ_out(h^L) (B, N, F).  Time t ∈ [0, 1] (and an optional
per-molecule context) enter as extra node features.
"""
from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from equilab.models.egnn import TorchDense
from equilab.registry import MODELS

FEATURE_SCALES = (1.0, 0.25, 0.1)  # EDM: positions / 1, one-hot / 4, charges / 10


def remove_mean(x: jnp.ndarray, node_mask: jnp.ndarray) -> jnp.ndarray:
    """Project (B, N, 3) onto the zero centre-of-mass subspace of the real atoms; padding -> 0."""
    m = node_mask[..., None].astype(x.dtype)
    n = jnp.maximum(m.sum(1, keepdims=True), 1.0)
    return (x - (x * m).sum(1, keepdims=True) / n) * m


def data_features(batch: dict, scales: Sequence[float] = FEATURE_SCALES) -> jnp.ndarray:
    """Scaled node features [one_hot·s₁, charge·s₂] (B, N, 6) from a QM9 batch."""
    oh = jnp.asarray(batch["one_hot"])
    ch = jnp.asarray(batch["charges"], oh.dtype)[..., None]
    return jnp.concatenate([oh * scales[1], ch * scales[2]], -1)


class EGNNDynamics(nn.Module):
    """ε- or velocity-network (x, h, t) -> (v (B, N, 3), h_out (B, N, F)).

    Call with a dict: ``positions`` (B, N, 3), ``features`` (B, N, F), ``t`` (B,),
    ``node_mask`` (B, N) bool, optional ``context`` (B, C).  A plain data batch (``one_hot``,
    ``charges``, no ``features``/``t``) is accepted too, with t = 0, so that ``init`` works on
    the data module's example batch.

    Attributes:
        n_features: F, node feature width in and out.
        hidden: width of h and of the MLPs.  n_layers: number of EGNN layers.
        coords_range: r, bound of each coordinate update (tanh), 15 as EDM.
        normalization_factor: Z, the sum aggregation is divided by it (EDM: 1).
        context_dim: width of the context appended to the node features (0: none).
        distance_rbf: K > 0 adds K Gaussian radial basis functions of the current distance
            |x_i − x_j| (centres evenly on [0, rbf_max] Å, width = their spacing) to each
            layer's edge input, beside d and d⁰ (0: EDM's squared distances only).
        rbf_max: upper end of the RBF centres, Å.
        weight_init: ``lecun`` (Flax's default: lecun-normal kernels, zero biases) or ``torch``
            (PyTorch's ``nn.Linear`` default, which EDM trains with: kernels and biases uniform in
            ±1/√fan_in, i.e. a kernel variance of 1/(3·fan_in)).  The coordinate head's last layer
            keeps EDM's tiny Xavier init either way.
    """

    n_features: int = 6
    hidden: int = 64
    n_layers: int = 4
    coords_range: float = 15.0
    normalization_factor: float = 1.0
    context_dim: int = 0
    distance_rbf: int = 0
    rbf_max: float = 5.0
    weight_init: str = "lecun"

    def _dense(self, x, features: int, name: str, use_bias: bool = True, fan_in: int | None = None):
        """nn.Dense with the chosen init; ``fan_in`` overrides x's width for the parts of a split
        layer (φ_e's first layer sees [h_i, h_j, d, d⁰, rbf] as one input)."""
        if self.weight_init == "lecun":
            return nn.Dense(features, use_bias=use_bias, name=name)(x)
        return TorchDense(features, use_bias=use_bias, fan_in=int(fan_in or x.shape[-1]), name=name)(x)

    def _rbf(self, d: jnp.ndarray) -> jnp.ndarray:
        """(..., 1) squared distances -> (..., K) Gaussian RBFs of the distance."""
        k = int(self.distance_rbf)
        mu = jnp.linspace(0.0, self.rbf_max, k, dtype=d.dtype)
        width = self.rbf_max / max(k - 1, 1)
        r = jnp.sqrt(d + 1e-8)
        return jnp.exp(-(((r - mu) / width) ** 2))

    @nn.compact
    def __call__(self, inputs: dict) -> tuple[jnp.ndarray, jnp.ndarray]:
        x0 = jnp.asarray(inputs["positions"])
        dtype = x0.dtype
        mask = jnp.asarray(inputs["node_mask"]).astype(bool)
        h_in = inputs["features"] if "features" in inputs else data_features(inputs)
        h_in = jnp.asarray(h_in, dtype)
        b, n, _ = x0.shape
        t = jnp.asarray(inputs["t"], dtype) if "t" in inputs else jnp.zeros((b,), dtype)
        parts = [h_in, jnp.broadcast_to(t[:, None, None], (b, n, 1))]
        if self.context_dim:
            ctx = jnp.asarray(inputs["context"], dtype).reshape(b, self.context_dim)
            parts.append(jnp.broadcast_to(ctx[:, None, :], (b, n, self.context_dim)))
        nm = mask[..., None].astype(dtype)
        em = (mask[:, :, None] & mask[:, None, :] & ~jnp.eye(n, dtype=bool))[..., None].astype(dtype)

        def sqdist(x):
            diff = x[:, :, None, :] - x[:, None, :, :]
            return diff, (diff**2).sum(-1, keepdims=True)

        _, d0 = sqdist(x0)
        h = self._dense(jnp.concatenate(parts, -1), self.hidden, "embed") * nm
        x = x0
        act = nn.silu
        fan_e = 2 * self.hidden + 2 + int(self.distance_rbf)
        for l in range(self.n_layers):
            diff, d = sqdist(x)
            # φ_e's first layer on [h_i, h_j, d, d⁰] split into per-node products that are then
            # broadcast over pairs: the same affine map, without a (B, N, N, 2H+2) matmul.
            m = (self._dense(h, self.hidden, f"edge_{l}_i", fan_in=fan_e)[:, :, None, :]
                 + self._dense(h, self.hidden, f"edge_{l}_j", use_bias=False, fan_in=fan_e)[:, None, :, :]
                 + self._dense(jnp.concatenate([d, d0], -1), self.hidden, f"edge_{l}_d", use_bias=False, fan_in=fan_e))
            if self.distance_rbf:
                m = m + self._dense(self._rbf(d), self.hidden, f"edge_{l}_rbf", use_bias=False, fan_in=fan_e)
            m = act(m)
            m = act(self._dense(m, self.hidden, f"edge_{l}_1"))
            m = m * nn.sigmoid(self._dense(m, 1, f"att_{l}")) * em
            agg = m.sum(2) / self.normalization_factor
            dh = self._dense(jnp.concatenate([h, agg], -1), self.hidden, f"node_{l}_0")
            h = (h + self._dense(act(dh), self.hidden, f"node_{l}_1")) * nm
            # Coordinates: a bounded scalar weight per pair on the normalised difference vector
            # (the +1 keeps close pairs from blowing up, as in EDM's norm_constant).
            w = act(self._dense(m, self.hidden, f"coord_{l}_0"))
            w = nn.Dense(1, use_bias=False, name=f"coord_{l}_1",
                         kernel_init=nn.initializers.variance_scaling(1e-6, "fan_avg", "uniform"))(w)  # EDM: xavier gain 1e-3
            w = jnp.tanh(w) * self.coords_range * em
            unit = diff / (jnp.sqrt(d + 1e-8) + 1.0)
            x = x + (unit * w).sum(2) / self.normalization_factor * nm
        v = remove_mean(x - x0, mask)
        h_out = self._dense(h, self.n_features, "out") * nm
        return v, h_out


@MODELS.register("egnn_dynamics")
def build(cfg: dict, data) -> EGNNDynamics:
    """cfg: hidden, n_layers, coords_range, normalization_factor, context_dim, distance_rbf, rbf_max, weight_init.

    ``context_dim: null`` (the default) takes the width of the data's context (``data.condition_on``
    gives 1, none gives 0); an explicit value must agree with the data when the data has one.
    """
    from equilab.errors import ConfigError

    stats = getattr(data, "stats", {}) or {}
    n_types = len(stats.get("atom_types", ("H", "C", "N", "O", "F")))
    cfg = dict(cfg)
    ctx = cfg.pop("context_dim", None)
    data_ctx = stats.get("context_dim")
    if ctx is None:
        ctx = data_ctx or 0
    elif data_ctx is not None and int(ctx) != int(data_ctx):
        raise ConfigError(f"model.context_dim={ctx} but the data provides a context of width {data_ctx} "
                          f"(data.condition_on={stats.get('condition_on')!r}); leave model.context_dim null")
    try:
        k = int(cfg.get("distance_rbf", 0) or 0)
        rmax = float(cfg.get("rbf_max", 5.0))
    except (TypeError, ValueError):
        k, rmax = -1, 0.0
    if k < 0 or k == 1 or rmax <= 0:
        raise ConfigError(f"model.distance_rbf={cfg.get('distance_rbf')!r} / model.rbf_max={cfg.get('rbf_max')!r}: "
                          "the number of RBFs must be 0 (off) or >= 2, and rbf_max a positive distance in Å")
    cfg.update(distance_rbf=k, rbf_max=rmax)
    if cfg.get("weight_init", "lecun") not in ("lecun", "torch"):
        raise ConfigError(f"model.weight_init={cfg.get('weight_init')!r}; choose lecun (Flax default) or torch (EDM's)")
    return EGNNDynamics(n_features=n_types + 1, context_dim=int(ctx), **cfg)
