"""Signed error of the bond lengths of a flow-matching model's predicted endpoint,
x̂1 = x_t + (1 - t) v̂, on the paths of 8 validation batches (rotation-aligned, as in training), at
t = 0.5 ... 0.98: is a bias in the samples' bond lengths already in the learned field?

    PYTHONPATH=. python scripts/flow_endpoint_bias.py OUT.json RUN_DIR [RUN_DIR ...]

Pairs under 2 Å in the data molecule count as bonds. Prints one JSON line per run; writes all to OUT.json.
"""
import json, sys
import jax, jax.numpy as jnp, numpy as np
from equilab.cli import setup_jax
setup_jax()
from equilab.train.checkpoint import read_meta
from equilab.train.loop import Trainer
from equilab.generative import flow
from equilab.generative.common import zero_com_normal, masked_normal, rotate_onto

out = {}
for run in sys.argv[2:]:
    meta, _ = read_meta(run, "best")
    tr = Trainer(meta["config"], run)
    state, _, _ = tr.restore_best()
    params = tr.eval_params(state)
    task, model = tr.task, tr.model
    res = {t: [] for t in (0.5, 0.8, 0.9, 0.95, 0.98)}
    for bi, batch in enumerate(tr.data.eval_batches("valid")):
        if bi == 8:
            break
        x, h, mask, ctx = task._inputs(batch)
        mask = mask & jnp.asarray(batch["graph_mask"])[:, None]
        key = jax.random.PRNGKey(bi)
        kx, kh = jax.random.split(key)
        x0 = zero_com_normal(kx, mask, x.dtype)
        h0 = masked_normal(kh, mask, h.shape[-1], x.dtype)
        x = rotate_onto(x, x0, mask)
        dyn = task._dyn(model, params, mask, ctx)
        r = x[:, :, None] - x[:, None]
        d = jnp.sqrt((r ** 2).sum(-1))
        n = x.shape[1]
        pair = mask[:, :, None] & mask[:, None] & ~jnp.eye(n, dtype=bool) & (d < 2.0)
        for t in res:
            tt = jnp.full((x.shape[0],), t, x.dtype)
            xt = (1 - t) * x0 + t * x
            vx, _ = jax.jit(dyn)(xt, (1 - t) * h0 + t * h, tt)
            x1 = xt + (1 - t) * vx
            dh = jnp.sqrt(((x1[:, :, None] - x1[:, None]) ** 2).sum(-1))
            res[t].append(np.asarray((dh - d)[pair]))
    out[run] = {str(t): {"mean_A": float(np.concatenate(v).mean()), "median_A": float(np.median(np.concatenate(v))),
                         "rms_A": float(np.sqrt((np.concatenate(v) ** 2).mean())), "n_pairs": int(sum(len(a) for a in v))}
                for t, v in res.items()}
    print(run, json.dumps(out[run]))
json.dump(out, open(sys.argv[1], "w"), indent=1)
