"""Imports every module that registers a model, dataset, task or tensor product.

Factories import this module once; a new family adds one line here.
"""
import equilab.data.atoms  # noqa: F401  (acac, bpa3, rmd17)
import equilab.data.nbody  # noqa: F401
import equilab.data.qm9  # noqa: F401
import equilab.models.egnn  # noqa: F401  (egnn, linear_dynamics)
import equilab.models.egnn_dynamics  # noqa: F401
import equilab.models.egnn_property  # noqa: F401
import equilab.models.mace  # noqa: F401
import equilab.tasks.energy_forces  # noqa: F401
import equilab.tasks.generative  # noqa: F401  (edm, flow_matching)
import equilab.tasks.nbody  # noqa: F401
import equilab.tasks.property  # noqa: F401  (property_regression)
import equilab.tp  # noqa: F401  (cg, gaunt_s2grid, gaunt_fourier, escn)
