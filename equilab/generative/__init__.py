"""Generative models on point clouds with atom types: E(3) diffusion (EDM) and equivariant flow
matching, as pure functions (losses, samplers under ``lax.scan``) around an equivariant dynamics
network (``equilab.models.egnn_dynamics``)."""
