"""Functional tensor products on ``e3nn.IrrepsArray``: one file per algorithm, one signature.

``tensor_product(x1, x2, method=...)`` with ``method`` in ``cg``, ``gaunt_s2grid``,
``gaunt_fourier``; ``tensor_product_with_sh(x, vectors, lmax=..., method=...)`` with ``method``
in ``cg``, ``escn``. Methods are looked up by name in ``equilab.registry.TP_METHODS`` /
``SH_TP_METHODS``.
"""
from equilab.tp import cg, escn, gaunt_fourier, gaunt_s2grid  # noqa: F401  (register the methods)
from equilab.tp.expressivity import expressivity  # noqa: F401
from equilab.tp.interface import tensor_product, tensor_product_with_sh  # noqa: F401

__all__ = ["tensor_product", "tensor_product_with_sh", "expressivity"]
