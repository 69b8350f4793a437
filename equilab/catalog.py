"""Imports every module that registers a model, dataset, task or tensor product."""
import equilab.data.nbody  # noqa: F401
import equilab.models.egnn  # noqa: F401
import equilab.tasks.nbody  # noqa: F401
