"""Flax modules: parameters with stable names and a call into ``equilab.tp`` (no maths here)."""
from equilab.nn.tensor_product import TensorProduct  # noqa: F401

__all__ = ["TensorProduct"]
