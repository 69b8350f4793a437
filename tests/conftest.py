import os
import pathlib

# Persistent compilation cache: compile time dominates the suite on CPU.
_CACHE = os.environ.setdefault(
    "EQUILAB_JAX_CACHE", str(pathlib.Path.home() / ".cache" / "equilab" / "jax_cache")
)
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)

REPO = pathlib.Path(__file__).resolve().parents[1]
SHARED_DATA = (REPO.parent / "shared" / "data").resolve()


@pytest.fixture
def x64():
    """Run a test in float64 and restore the previous setting afterwards."""
    old = jax.config.jax_enable_x64
    jax.config.update("jax_enable_x64", True)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", old)


@pytest.fixture
def shared_data():
    if not SHARED_DATA.exists():
        pytest.skip(f"shared data folder {SHARED_DATA} not present")
    return SHARED_DATA


@pytest.fixture(scope="session")
def qm9_dir():
    """Data root for the QM9 cache: never the read-only shared data folder.

    ``EQUILAB_TEST_DATA_DIR`` overrides; the default persists across runs like the JAX cache,
    so the ~10 s CSV parse happens once per machine.
    """
    import importlib.util

    root = os.environ.get("EQUILAB_TEST_DATA_DIR", str(pathlib.Path.home() / ".cache" / "equilab" / "data"))
    if importlib.util.find_spec("qm9pack") is None:
        pytest.skip("qm9pack is not installed")
    return root
