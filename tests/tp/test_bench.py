"""``equilab-bench tp`` on a tiny grid: every case becomes a CSV row as soon as it is timed (a
stopped run keeps what it measured), and ``scripts/tp_log_table.py`` reads the same cases back
from the printed log."""
import csv
import importlib.util
import json
from pathlib import Path

from equilab.bench import run_tp
REPO = Path(__file__).resolve().parents[2]


def _log_parser():
    spec = importlib.util.spec_from_file_location("tp_log_table", REPO / "scripts" / "tp_log_table.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_tiny_tp_bench_writes_rows_and_its_log_parses_back(tmp_path, capsys):
    cfg = {"Ls": [1, 2], "batches": [8], "channels": [1], "methods": ["cg", "gaunt_s2grid"], "dtype": "float32",
           "warmup": 1, "repeats": 2, "backward": True, "backward_max_L": {"cg": 1}, "max_call_s": 30.0,
           "fit_Ls": [1, 2], "escn": {"enabled": False}, "expressivity": {"enabled": False},
           "out_dir": str(tmp_path), "tag": "t"}
    result = run_tp(cfg)
    # cg: fwd at L=1,2 and fwd_bwd at L=1 only (backward_max_L); gaunt_s2grid: both passes at both L
    assert len(result["rows"]) == 3 + 4
    with open(tmp_path / "timings_t.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["method"], r["L"], r["pass_"]) for r in rows] == \
        [(r["method"], str(r["L"]), r["pass_"]) for r in result["rows"]]
    assert json.loads((tmp_path / "results_t.json").read_text())["backend"] == "cpu"
    parsed = _log_parser().parse(capsys.readouterr().out, repeats=2)
    assert [(r["method"], r["L"], r["pass_"], r["n"]) for r in parsed] == \
        [(r["method"], r["L"], r["pass_"], r["n"]) for r in result["rows"]]
    for p, r in zip(parsed, result["rows"]):
        assert abs(p["median_ms"] - r["median_ms"]) <= 5e-4 + 1e-3 * r["median_ms"]


def test_every_gaunt_bench_method_computes_the_same_product(x64):
    """The bench's method names (library defaults and the layout variants it times side by side)
    all compute the same Gaunt product of s2_irreps(L) ⊗ s2_irreps(L) → s2_irreps(2L)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from equilab.bench import product_fn

    L = 2
    a1, a2 = (jax.random.normal(jax.random.PRNGKey(i), (4, (L + 1) ** 2), jnp.float64) for i in (0, 1))
    ref = np.asarray(product_fn("gaunt_s2grid_unfolded", L)(a1, a2))
    assert np.abs(ref).max() > 0.1
    for m in ["gaunt_s2grid", "gaunt_s2grid_dense", "gaunt_s2grid_fft", "gaunt_fourier", "gaunt_fourier_dense",
              "gaunt_fourier_fft"]:
        np.testing.assert_allclose(np.asarray(product_fn(m, L)(a1, a2)), ref, rtol=1e-10, atol=1e-12, err_msg=m)
