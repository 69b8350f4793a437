import importlib.util
import os
import pathlib

import pytest


@pytest.fixture(scope="session")
def qm9_dir():
    """Data root for the QM9 cache: never the read-only shared data folder.

    ``EQUILAB_TEST_DATA_DIR`` overrides; the default persists across runs like the JAX cache,
    so the ~10 s CSV parse happens once per machine.
    """
    root = os.environ.get("EQUILAB_TEST_DATA_DIR", str(pathlib.Path.home() / ".cache" / "equilab" / "data"))
    if importlib.util.find_spec("qm9pack") is None:
        pytest.skip("qm9pack is not installed")
    return root
