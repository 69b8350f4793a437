"""The one place that touches e3nn-jax private API (pinned e3nn-jax 0.21).

``change_basis_real_to_complex`` is the unitary e3nn-jax uses to build its real Clebsch–Gordan
coefficients; reusing it keeps equilab's exact coefficients in e3nn-jax's basis and sign
convention.
"""
from e3nn_jax._src.so3 import change_basis_real_to_complex  # noqa: F401
