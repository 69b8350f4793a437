"""Graph batches with static padded shapes.

Convention (shared by every data module and model): a batch is a dict of NumPy arrays with
``positions`` (N,3), ``node_mask`` (N,), ``node_graph`` (N,) segment ids, ``senders``,
``receivers`` (E,), ``edge_mask`` (E,), ``graph_mask`` (G,). Padded nodes belong to the last
graph (index G−1, always padding); padded edges join the last node to itself and are masked, so
they contribute exactly zero. Budgets are fixed per data module, so a run compiles once per
bucket.
"""
from __future__ import annotations

import functools
from typing import Dict

import numpy as np


def _round_up(n: int, m: int) -> int:
    return -(-n // m) * m


@functools.cache
def _fc_edges(n_per_graph: int):
    s, r = np.nonzero(~np.eye(n_per_graph, dtype=bool))
    return s.astype(np.int32), r.astype(np.int32)


def fully_connected_batch(fields: Dict[str, np.ndarray], *, n_graphs: int, n_per_graph: int,
                          pad_multiple: int = 1) -> Dict[str, np.ndarray]:
    """Pack ``b ≤ n_graphs`` equally sized, fully connected graphs into one padded batch.

    ``fields`` hold per-graph arrays of shape (b, n_per_graph, ...) (node fields) — every field
    is flattened to (b·n_per_graph, ...) and zero padded. Budgets: nodes
    ``n_graphs·n + p``, edges ``n_graphs·n(n−1) + p``, graphs ``n_graphs + p`` with ``p ≥ 1``
    chosen so that every budget is a multiple of ``pad_multiple`` (device count).
    """
    b = len(next(iter(fields.values())))
    n = n_per_graph
    s, r = _fc_edges(n)
    e_per = len(s)
    N = _round_up(n_graphs * n + 1, pad_multiple)
    E = _round_up(n_graphs * e_per + 1, pad_multiple)
    G = _round_up(n_graphs + 1, pad_multiple)
    out = {}
    for k, v in fields.items():
        flat = v.reshape((b * n,) + v.shape[2:])
        buf = np.zeros((N,) + flat.shape[1:], dtype=flat.dtype)
        buf[: b * n] = flat
        out[k] = buf
    offs = (np.arange(b, dtype=np.int32) * n)[:, None]
    senders = np.full(E, N - 1, np.int32)
    receivers = np.full(E, N - 1, np.int32)
    senders[: b * e_per] = (s[None] + offs).ravel()
    receivers[: b * e_per] = (r[None] + offs).ravel()
    node_graph = np.full(N, G - 1, np.int32)
    node_graph[: b * n] = np.repeat(np.arange(b, dtype=np.int32), n)
    out.update(
        senders=senders, receivers=receivers, node_graph=node_graph,
        node_mask=np.arange(N) < b * n, edge_mask=np.arange(E) < b * e_per, graph_mask=np.arange(G) < b,
    )
    return out
