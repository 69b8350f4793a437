"""MACE (Batatia et al. 2022): higher-order equivariant message passing for interatomic potentials.

Per layer t, for atom i with neighbours j (|r_ij| < r_c):

- radial basis  R_n(r) = sqrt(2/r_c) sin(nπ r/r_c)/r · u_p(r/r_c)   (Bessel, polynomial envelope p)
- one-particle basis  A_i = W Σ_j [R(r_ij) ⊙ (W_up h_j ⊗ Y(r̂_ij))] / avg_num_neighbours
- many-body basis  B_i = Σ_{ν≤ν_max} w_{z_i,ν} · (A_i)^{⊗ν}   (the ``tp`` switch, below)
- update  h_i ← W B_i + W_{z_i} h_i ;  readouts: linear (t < T), MLP (t = T)
- E = Σ_i [E0(z_i) + shift + scale · Σ_t readout_t(h_i)],  F = −∂E/∂x.

``tp`` selects the product in the many-body step:

- ``cg``: MACE's symmetric contraction, the ν-th power of A_i contracted with the generalised
  Clebsch–Gordan basis of the symmetric tensor power (``e3nn.reduced_symmetric_tensor_product_basis``)
  and species-dependent weights per path and channel;
- ``gaunt_s2grid`` / ``gaunt_fourier``: the Gaunt-product version (Luo et al. 2024): A_i read as
  a spherical function per channel, B_ν the product of ν per-degree reweighted copies of it,
  computed as repeated Gaunt products (spherical-grid or 2D-Fourier algorithm).

Batches follow ``equilab/data/atoms.py``; the model returns a dict with ``energy`` (G,),
``energy_residual`` (G,) = E − Σ_i (E0 + shift), ``forces`` (N,3), ``node_energy`` (N,).
"""
from __future__ import annotations

import dataclasses
import functools
import itertools
from typing import Tuple

import e3nn_jax as e3nn
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from equilab.errors import ConfigError
from equilab.registry import MODELS

TP_CHOICES = ("cg", "gaunt_s2grid", "gaunt_fourier")


# ------------------------------------------------------------------------- functional core


def radial_basis(r: jnp.ndarray, *, cutoff: float, num_bessel: int, p: int) -> jnp.ndarray:
    """Bessel basis times the MACE polynomial envelope: (E,) → (E, num_bessel).

    u_p(x) = 1 − (p+1)(p+2)/2 x^p + p(p+2) x^{p+1} − p(p+1)/2 x^{p+2} for x < 1, else 0, which is
    ``e3nn.poly_envelope(p − 1, 2)`` (p−1 vanishing derivatives at 0, value and two at 1).
    """
    env = e3nn.poly_envelope(p - 1, 2)(r / cutoff)
    return e3nn.bessel(r, num_bessel, cutoff) * env[:, None]


@functools.cache
def _symmetric_basis(irreps_in: str, order: int, irreps_out: str):
    """Generalised CG basis of Sym^order(irreps_in) → irreps_out, folded onto sorted index tuples.

    Returns ``(idx (P, order) int, [(ir_out str, mul K, U (P, K·(2l+1)))...])`` so that
    Σ_{i_1..i_ν} U[i_1..i_ν] x_{i_1}..x_{i_ν} = Σ_p U_sym[p] Π_k x_{idx[p,k]}: the symmetric
    basis is summed over the permutations of each multiset once, in NumPy, so the per-atom
    work is one dense matmul over C(d+ν−1, ν) monomials instead of d^ν.
    """
    U = e3nn.reduced_symmetric_tensor_product_basis(e3nn.Irreps(irreps_in), order,
                                                    keep_ir=e3nn.Irreps(irreps_out))
    d = e3nn.Irreps(irreps_in).dim
    idx = np.array(list(itertools.combinations_with_replacement(range(d), order)), np.int32)
    blocks = []
    for (mul, ir), u in zip(U.irreps, U.chunks):
        if u is None or mul == 0:
            continue
        u = np.asarray(u, np.float64)  # (d,)*order + (mul, 2l+1)
        folded = np.zeros((len(idx), mul, ir.dim))
        for p, tup in enumerate(idx):
            for perm in set(itertools.permutations(tuple(tup))):
                folded[p] += u[perm]
        blocks.append((str(ir), mul, folded.reshape(len(idx), mul * ir.dim)))
    return idx, blocks


def symmetric_contraction(x: jnp.ndarray, species: jnp.ndarray, weights: dict, *, irreps_in: str,
                          irreps_out: str, correlation: int) -> e3nn.IrrepsArray:
    """MACE's many-body basis with CG coefficients.

    Args:
        x: (N, C, irreps_in.dim) per-channel features A (channel axis split off).
        species: (N,) int species indices.
        weights: ``weights[f"w{ν}_{ir}"]`` of shape (S, K_ν,ir, C).
    Returns:
        (N, C·irreps_out) IrrepsArray, B = Σ_ν Σ_k w_{z,ν,k,c} Σ U^{ν}_k A_c^{⊗ν}.
    """
    out = {}
    eye = np.eye(x.shape[-1])
    for order in range(1, correlation + 1):
        idx, blocks = _symmetric_basis(irreps_in, order, irreps_out)
        # Monomials Π_k x_{idx[p,k]}, (N, C, P).  Each factor is picked by a one-hot matmul, not a
        # gather: the same numbers, but the backward passes (forces, then their parameter
        # gradient) become matmuls instead of scatter-adds, 1.7x faster per training step on CPU.
        mono = None
        for k in range(order):
            f = jnp.einsum("ncd,dp->ncp", x, jnp.asarray(eye[idx[:, k]].T, x.dtype))
            mono = f if mono is None else mono * f
        for ir, mul, u in blocks:
            u = jnp.asarray(u, x.dtype).reshape(len(idx), mul, e3nn.Irrep(ir).dim)  # (P, K, 2l+1)
            t = jnp.einsum("ncp,pkm->nckm", mono, u)
            y = jnp.einsum("nckm,nkc->ncm", t, weights[f"w{order}_{ir}"][species])
            out[ir] = out[ir] + y if ir in out else y
    irreps_out = e3nn.Irreps(irreps_out)
    C = x.shape[1]
    chunks = [out[str(ir)][:, :, None, :] if str(ir) in out else None for _, ir in irreps_out]
    arr = e3nn.from_chunks(irreps_out, chunks, (x.shape[0], C), x.dtype)  # (N, C, irreps_out)
    return arr.axis_to_mul()


GAUNT_LAYOUTS = ("dense", "folded")


def gaunt_product(x1: e3nn.IrrepsArray, x2: e3nn.IrrepsArray, *, lmax_out: int, method: str,
                  layout: str = "dense") -> e3nn.IrrepsArray:
    """Gaunt product of two channel-wise spherical functions: (..., s2_irreps(L1)) x
    (..., s2_irreps(L2)) → (..., s2_irreps(lmax_out)), the projection of f1·f2 onto Y_lm, by the
    tensor-product library's ``gaunt_s2grid`` or ``gaunt_fourier`` algorithm (both exact).

    ``layout="dense"``: whole-grid matrices, three matmuls over atoms × channels. MACE's degrees
    are small (L ≤ 4, grids of a few dozen points), where this beat the symmetry-folded,
    chunk-looped transforms (``"folded"``, the library default, built for large L) by 1.5× per
    training step on CPU (experiments/acac/README.md, speed)."""
    from equilab.tp import tensor_product

    return tensor_product(x1, x2, method=method, irreps_out=e3nn.s2_irreps(lmax_out), dense=layout == "dense")


def gaunt_many_body(x: e3nn.IrrepsArray, species: jnp.ndarray, weights: dict, *, irreps_out: str,
                    correlation: int, method: str, layout: str = "dense") -> e3nn.IrrepsArray:
    """Many-body basis from repeated Gaunt products (Luo et al. 2024).

    Args:
        x: (N, C, s2_irreps(L)) per-channel spherical functions A.
        weights: ``v{ν}_{k}`` (S, C, L+1) per-degree weights of the k-th factor and ``w{ν}``
            (S, C, lmax_out+1) output weights, both species dependent.
    Returns:
        (N, C·irreps_out), B = Σ_ν w_ν ⊙ Proj_{≤lout}(Π_{k≤ν} (v_{ν,k} ⊙ A)).

    Intermediate products keep every degree that can still reach the output, min(kL, lout+(ν−k)L),
    so the truncation is exact and both Gaunt algorithms compute the same function.
    """
    irreps_out = e3nn.Irreps(irreps_out)
    L, lout = x.irreps.lmax, irreps_out.lmax
    ls_in = jnp.asarray(np.concatenate([[l] * (2 * l + 1) for l in range(L + 1)]))
    ls_out = jnp.asarray(np.concatenate([[l] * (2 * l + 1) for l in range(lout + 1)]))
    total = None
    for nu in range(1, correlation + 1):
        acc = None
        for k in range(1, nu + 1):
            v = weights[f"v{nu}_{k}"][species][:, :, ls_in]  # (N, C, dim) per-degree weights
            f = e3nn.IrrepsArray(x.irreps, x.array * v)
            if acc is None:
                acc = f
            else:
                acc = gaunt_product(acc, f, lmax_out=min(k * L, lout + (nu - k) * L), method=method, layout=layout)
        b = acc.filter(lmax=lout) if acc.irreps.lmax > lout else acc
        b = _pad_to_s2(b, lout)
        w = weights[f"w{nu}"][species][:, :, ls_out]
        b = b.array * w
        total = b if total is None else total + b
    full = e3nn.IrrepsArray(e3nn.s2_irreps(lout), total)
    return full.filter(keep=irreps_out).axis_to_mul()


def _pad_to_s2(x: e3nn.IrrepsArray, lmax: int) -> e3nn.IrrepsArray:
    """Express x on exactly s2_irreps(lmax) (zeros for missing degrees; e.g. ν=1 with L < lmax)."""
    target = e3nn.s2_irreps(lmax)
    chunks = []
    for _, ir in target:
        got = x.filter(keep=[ir])
        chunks.append(got.array[..., None, :] if got.irreps.dim else None)
    return e3nn.from_chunks(target, chunks, x.shape[:-1], x.dtype)


# ------------------------------------------------------------------------------- modules


class SymmetricContraction(nn.Module):
    """Species-dependent weights + ``symmetric_contraction`` (cg) or ``gaunt_many_body`` (Gaunt)."""

    irreps_out: str
    correlation: int
    num_species: int
    tp: str = "cg"
    gaunt_layout: str = "dense"

    @nn.compact
    def __call__(self, x: e3nn.IrrepsArray, species: jnp.ndarray) -> e3nn.IrrepsArray:
        # x: (N, C, irreps_in) with the channel axis split off.
        C = x.shape[-2]
        init = nn.initializers.normal(1.0)
        S = self.num_species
        if self.tp == "cg":
            weights = {}
            for order in range(1, self.correlation + 1):
                _, blocks = _symmetric_basis(str(x.irreps), order, self.irreps_out)
                for ir, mul, _ in blocks:
                    # 1/√K keeps B of order one whatever the number of paths
                    weights[f"w{order}_{ir}"] = self.param(f"w{order}_{ir}", init, (S, mul, C), x.dtype) / np.sqrt(mul)
            return symmetric_contraction(x.array, species, weights, irreps_in=str(x.irreps),
                                         irreps_out=self.irreps_out, correlation=self.correlation)
        L, lout = x.irreps.lmax, e3nn.Irreps(self.irreps_out).lmax
        weights = {}
        for nu in range(1, self.correlation + 1):
            for k in range(1, nu + 1):
                weights[f"v{nu}_{k}"] = self.param(f"v{nu}_{k}", nn.initializers.ones, (S, C, L + 1), x.dtype)
            weights[f"w{nu}"] = self.param(f"w{nu}", init, (S, C, lout + 1), x.dtype)
        return gaunt_many_body(x, species, weights, irreps_out=self.irreps_out, correlation=self.correlation,
                               method=self.tp, layout=self.gaunt_layout)


class EdgePlan:
    """Constants of :func:`edge_messages` for per-channel irreps ``h1`` (e.g. 0e+1o+2e), edge
    harmonics ``y`` and an output filter, C channels.

    ``T[i, j, o]`` is e3nn.tensor_product on one channel (so the same CG coefficients,
    normalisation, path order and regrouping), read off basis vectors. ``irreps`` is the
    C-channel output, whose every entry (k·C, ir) is laid out [k paths, C channels, 2l+1];
    ``entries`` lists the (first column, k, 2l+1) of every one-channel output entry; its k paths
    take the next k radial-weight blocks.
    """

    def __init__(self, h1: str, y: str, filter_out: str, C: int):
        h1, y = e3nn.Irreps(h1), e3nn.Irreps(y)
        eye1, eyey = np.eye(h1.dim), np.eye(y.dim)
        # concrete float64 constants even when first called under jit or with x64 off
        with jax.ensure_compile_time_eval(), _x64():
            out = e3nn.tensor_product(e3nn.IrrepsArray(h1, eye1[:, None, :]), e3nn.IrrepsArray(y, eyey[None, :, :]),
                                      filter_ir_out=e3nn.Irreps(filter_out))
            self.T = np.asarray(out.array, np.float64)  # (i, j, o)
        irreps1 = out.irreps
        self.irreps = e3nn.tensor_product(C * h1, y, filter_ir_out=e3nn.Irreps(filter_out))
        if [ir for _, ir in self.irreps] != [ir for _, ir in irreps1] or \
                [m for m, _ in self.irreps] != [C * m for m, _ in irreps1]:
            raise AssertionError(f"edge plan: {irreps1} does not map onto {self.irreps}")
        entries, p, o = [], 0, 0
        for mul, ir in irreps1:
            entries.append((o, mul, ir.dim))
            p, o = p + mul, o + mul * ir.dim
        self.num_paths = p
        self.entries = entries
        self.channels = C


def _x64():
    """Context with float64 enabled (``jax.enable_x64``; ``jax.experimental.enable_x64`` on older JAX)."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64

    return enable_x64()


@functools.cache
def _edge_plan(h1: str, y: str, filter_out: str, C: int) -> EdgePlan:
    return EdgePlan(h1, y, filter_out, C)


def edge_messages(plan: EdgePlan, h: e3nn.IrrepsArray, Y: jnp.ndarray, mix: jnp.ndarray, senders, receivers,
                  num_nodes: int) -> e3nn.IrrepsArray:
    """A_i = Σ_j R_ij ⊙ (h_j ⊗ Y_ij): the radially weighted edge products summed on receivers.

    Equal to ``e3nn.scatter_sum(e3nn.tensor_product(h[senders], Y, filter_ir_out=f) * R, dst=receivers)``
    (MACE's channel-wise "uvu" product, every path its own block of C channels), computed with
    the channels last, as one small matmul per edge instead of one CG einsum per path:
    M_e = Σ_j Y_ej T[:, j, :] (edges × o × i), msg_eoc = Σ_i M_eoi h_{s(e)ic}, then each path's
    radial weights broadcast over its 2l+1 columns (no per-column gather, no edge-level transposes;
    the e3nn layout is restored on the nodes).

    Args:
        h: (N, C·h1) node features, C channels of every irrep of ``plan``'s h1.
        Y: (E, j) edge harmonics; mix: (E, P·C) radial weights, one per path and channel in
            the order of ``plan.irreps`` (what ``IrrepsArray * mix`` would apply).
    Returns:
        (N, plan.irreps) IrrepsArray.
    """
    E, C = Y.shape[0], plan.channels
    dt = h.dtype
    hT = jnp.concatenate([jnp.swapaxes(c, 1, 2) for c in h.chunks], axis=1)  # (N, i, C)
    M = jnp.einsum("ej,joi->eoi", Y, jnp.asarray(plan.T.transpose(1, 2, 0), dt))
    msg = jnp.einsum("eoi,eic->eoc", M, hT[senders])
    mix = mix.reshape(E, plan.num_paths, C)
    parts, p = [], 0
    for o, k, d in plan.entries:
        parts.append((msg[:, o : o + k * d].reshape(E, k, d, C) * mix[:, p : p + k, None, :]).reshape(E, k * d, C))
        p += k
    A = jax.ops.segment_sum(jnp.concatenate(parts, axis=1), receivers, num_segments=num_nodes)  # (N, o, C)
    chunks = []
    for o, k, d in plan.entries:
        a = A[:, o : o + k * d].reshape(num_nodes, k, d, C)
        chunks.append(jnp.swapaxes(a, 2, 3).reshape(num_nodes, k * C * d))
    return e3nn.IrrepsArray(plan.irreps, jnp.concatenate(chunks, axis=-1))


class SpeciesLinear(nn.Module):
    """``e3nn.flax.Linear(irreps_out, force_irreps_out=True)(onehot, x)``: a linear map whose
    weights depend on the species, with the same parameters (names, shapes, initialisation)
    and values, computed as one matmul per species and path. e3nn forms a weight matrix per
    atom (N × C_in × C_out) and a batched per-atom product, whose backward pass was the single
    most expensive fusion of a MACE training step on CPU."""

    irreps_out: str

    @nn.compact
    def __call__(self, onehot: jnp.ndarray, x: e3nn.IrrepsArray) -> e3nn.IrrepsArray:
        from e3nn_jax._src.linear import FunctionalLinear, parse_gradient_normalization

        x = x.remove_zero_chunks().regroup()
        lin = FunctionalLinear(x.irreps, e3nn.Irreps(self.irreps_out).simplify())
        gn = parse_gradient_normalization(None)
        d = onehot.shape[-1]
        alpha = 1.0 / d
        oh = onehot.astype(x.dtype)
        paths = []
        for ins in lin.instructions:
            if ins.i_in == -1:
                raise AssertionError("SpeciesLinear has no biases")
            name = f"w[{ins.i_in},{ins.i_out}] {lin.irreps_in[ins.i_in]},{lin.irreps_out[ins.i_out]}"
            w = self.param(name, nn.initializers.normal(np.sqrt(alpha) ** (1.0 - gn) * ins.weight_std),
                           (d,) + ins.path_shape, x.dtype)
            chunk = x.chunks[ins.i_in]
            if chunk is None:
                paths.append(None)
                continue
            y = jnp.einsum("ns,nswi->nwi", oh, jnp.einsum("nui,suw->nswi", chunk, w))
            paths.append(ins.path_weight * np.sqrt(alpha) ** gn * y)
        return lin.aggregate_paths(paths, x.shape[:-1], x.dtype).rechunk(self.irreps_out)


class MACEEnergy(nn.Module):
    """Per-atom energies of MACE; see the module docstring for the equations."""

    num_species: int
    num_channels: int = 32
    max_ell: int = 3
    hidden_lmax: int = 2
    num_interactions: int = 2
    correlation: int = 3
    num_bessel: int = 8
    poly_p: int = 5
    cutoff: float = 5.0
    radial_mlp: Tuple[int, ...] = (64, 64, 64)
    readout_mlp: int = 16
    avg_num_neighbors: float = 1.0
    tp: str = "cg"
    gaunt_layout: str = "dense"

    @nn.compact
    def __call__(self, positions, species, senders, receivers, edge_mask):
        C = self.num_channels
        N = positions.shape[0]
        dtype = positions.dtype
        vec = positions[receivers] - positions[senders]
        # Padded edges join a node to itself (zero vector): substitute a unit vector before the
        # norm so neither the value nor the gradient sees 0/0; their messages are masked below.
        vec = jnp.where(edge_mask[:, None], vec, jnp.ones_like(vec))
        r = jnp.linalg.norm(vec, axis=-1)
        Y = e3nn.spherical_harmonics(list(range(self.max_ell + 1)), e3nn.IrrepsArray("1o", vec / r[:, None]), normalize=False,
                                     normalization="component")
        radial = radial_basis(r, cutoff=self.cutoff, num_bessel=self.num_bessel, p=self.poly_p)
        radial = radial * edge_mask[:, None].astype(dtype)

        onehot = jax.nn.one_hot(species, self.num_species, dtype=dtype)
        h = e3nn.flax.Linear(f"{C}x0e", name="embedding")(e3nn.IrrepsArray(f"{self.num_species}x0e", onehot))
        sh_irreps = e3nn.Irreps([(1, (l, (-1) ** l)) for l in range(self.max_ell + 1)])
        interaction_irreps = (C * sh_irreps).regroup()
        hidden = e3nn.Irreps([(C, (l, (-1) ** l)) for l in range(self.hidden_lmax + 1)])
        energies = []
        for t in range(self.num_interactions):
            last = t == self.num_interactions - 1
            out_irreps = e3nn.Irreps(f"{C}x0e") if last else hidden
            skip = None
            if t > 0:  # species-dependent residual (MACE's skip tensor product with the one-hot)
                # one-hot float weights, not integer indices: e3nn's indexed path casts to float32
                skip = SpeciesLinear(str(out_irreps), name=f"skip_{t}")(onehot, h)
            h_up = e3nn.flax.Linear(h.irreps, name=f"linear_up_{t}")(h)
            h1 = str(e3nn.Irreps([(1, ir) for _, ir in h_up.irreps]))  # the irreps of one channel
            plan = _edge_plan(h1, str(Y.irreps), str(interaction_irreps), C)
            mix = e3nn.flax.MultiLayerPerceptron(tuple(self.radial_mlp) + (plan.irreps.num_irreps,), act=jax.nn.silu,
                                                 output_activation=False, name=f"radial_{t}")(radial)
            mix = mix.array if isinstance(mix, e3nn.IrrepsArray) else mix  # one weight per path and channel
            A = edge_messages(plan, h_up, Y.array, mix, senders, receivers, N)
            A = A / self.avg_num_neighbors
            A = e3nn.flax.Linear(interaction_irreps, force_irreps_out=True, name=f"linear_A_{t}")(A)
            if t == 0:  # MACE's first block mixes A per species (its skip_tp with the one-hot)
                A = SpeciesLinear(str(interaction_irreps), name="species_A_0")(onehot, A)
            per_channel = str(e3nn.Irreps([(1, ir) for _, ir in out_irreps]))
            B = SymmetricContraction(per_channel, self.correlation, self.num_species, self.tp, self.gaunt_layout,
                                     name=f"product_{t}")(A.mul_to_axis(C), species)
            h = e3nn.flax.Linear(out_irreps, force_irreps_out=True, name=f"linear_B_{t}")(B)
            if skip is not None:
                h = h + skip
            if last:
                s = e3nn.flax.Linear(f"{self.readout_mlp}x0e", name=f"readout_{t}_0")(h)
                s = e3nn.IrrepsArray(s.irreps, jax.nn.silu(s.array))
                e = e3nn.flax.Linear("0e", name=f"readout_{t}_1")(s)
            else:
                e = e3nn.flax.Linear("0e", name=f"readout_{t}")(h)
            energies.append(e.array[:, 0])
        return sum(energies)  # (N,)


_CORE_FIELDS = tuple(f.name for f in dataclasses.fields(MACEEnergy) if f.name not in ("parent", "name"))


class MACE(nn.Module):
    """MACE energy model with forces −∂E/∂x (lifted ``nn.value_and_grad`` over positions).

    ``e0`` (per species, eV), ``shift`` and ``scale`` come from the data module's statistics.
    """

    num_species: int
    e0: Tuple[float, ...]
    shift: float = 0.0
    scale: float = 1.0
    num_channels: int = 32
    max_ell: int = 3
    hidden_lmax: int = 2
    num_interactions: int = 2
    correlation: int = 3
    num_bessel: int = 8
    poly_p: int = 5
    cutoff: float = 5.0
    radial_mlp: Tuple[int, ...] = (64, 64, 64)
    readout_mlp: int = 16
    avg_num_neighbors: float = 1.0
    tp: str = "cg"
    gaunt_layout: str = "dense"
    learn_species_shift: bool = False

    @nn.compact
    def __call__(self, batch: dict, compute_forces: bool = True) -> dict:
        positions = jnp.asarray(batch["positions"])
        species = jnp.asarray(batch["species"])
        node_mask = jnp.asarray(batch["node_mask"])
        G = batch["graph_mask"].shape[0]
        node_graph = jnp.asarray(batch["node_graph"])
        # The core's hyperparameters are this module's fields of the same names (by name, not
        # by position, so adding a field to MACEEnergy cannot silently shift the others).
        core = MACEEnergy(**{f: getattr(self, f) for f in _CORE_FIELDS}, name="mace")
        args = (species, jnp.asarray(batch["senders"]), jnp.asarray(batch["receivers"]), jnp.asarray(batch["edge_mask"]))

        def residual(mdl, pos):
            node = self.scale * mdl(pos, *args) * node_mask.astype(pos.dtype)
            return node.sum(), node

        # Initialisation needs no forces: skipping the gradient halves the init compile.
        if compute_forces and not self.is_initializing():
            (_, node), grad = nn.value_and_grad(residual, core, positions, has_aux=True)
            forces = -grad[0]
        else:
            _, node = residual(core, positions)
            forces = None
        dtype = node.dtype
        if self.learn_species_shift:
            # a trainable energy per species (eV), added after the force gradient: forces never see
            # it. The network's per-atom mean is a direction the force loss cannot fix and λ_E
            # pulls on weakly; with its own AMSGrad step (~lr eV per step) it is learnt at once.
            b = self.param("species_shift", nn.initializers.zeros, (self.num_species,), dtype)
            node = node + b[species] * node_mask.astype(dtype)
        ref = (jnp.asarray(self.e0, dtype)[species] + self.shift) * node_mask.astype(dtype)
        resid_g = jax.ops.segment_sum(node, node_graph, num_segments=G)
        out = dict(energy_residual=resid_g, energy=resid_g + jax.ops.segment_sum(ref, node_graph, num_segments=G),
                   node_energy=node + ref)
        if forces is not None:
            out["forces"] = forces
        return out


@MODELS.register("mace")
def build(cfg: dict, data) -> MACE:
    """``model=mace``: kwargs as in ``configs/model/mace.yaml``; E0s, shift, scale, average
    neighbour count and cutoff from ``data.stats`` (a config value for ``cutoff`` must agree)."""
    cfg = dict(cfg)
    stats = data.stats if hasattr(data, "stats") else data
    tp = cfg.pop("tp", "cg")
    if tp not in TP_CHOICES:
        raise ConfigError(f"model.tp must be one of {list(TP_CHOICES)}, got {tp!r}")
    cutoff = float(cfg.pop("cutoff", stats["cutoff"]))
    if abs(cutoff - float(stats["cutoff"])) > 1e-12:
        raise ConfigError(f"model.cutoff={cutoff} differs from data.cutoff={stats['cutoff']} (neighbour lists)")
    known = {"num_channels", "max_ell", "hidden_lmax", "num_interactions", "correlation", "num_bessel", "poly_p",
             "radial_mlp", "readout_mlp", "scale_shift", "learn_species_shift", "gaunt_layout"}
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"model=mace: unknown keys {sorted(unknown)}")
    if cfg.get("gaunt_layout", "dense") not in GAUNT_LAYOUTS:
        raise ConfigError(f"model.gaunt_layout must be one of {list(GAUNT_LAYOUTS)}, got {cfg['gaunt_layout']!r}")
    use_scale_shift = cfg.pop("scale_shift", True)
    if "radial_mlp" in cfg:
        cfg["radial_mlp"] = tuple(int(n) for n in cfg["radial_mlp"])
    return MACE(
        num_species=len(stats["atomic_numbers"]), e0=tuple(float(e) for e in stats["e0"]),
        shift=float(stats["shift"]) if use_scale_shift else 0.0,
        scale=float(stats["scale"]) if use_scale_shift else 1.0,
        cutoff=cutoff, avg_num_neighbors=float(stats["avg_num_neighbors"]), tp=tp, **cfg)
