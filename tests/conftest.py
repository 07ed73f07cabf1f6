"""Test-wide setup: 8 fake CPU devices so every sharded/collective path runs here."""

import os

from tests.xla_flags import FAST_COMPILE_FLAGS

# Must happen before jax is imported anywhere.
_flags = os.environ.get("XLA_FLAGS", "")
if "xla_force_host_platform_device_count" not in _flags:
    _flags = f"{_flags} --xla_force_host_platform_device_count=8"
# XLA's CPU collectives abort the process ("Termination timeout ... exceeded") when one of
# the 8 device threads reaches a rendezvous more than a timeout after the others. On 2
# overloaded cores a pmap test's worker died of an abort inside its steps, most likely this
# one. Waiting is right for fake devices: all 8 threads do arrive.
if "collective_call_terminate_timeout" not in _flags:
    _flags = f"{_flags} --xla_cpu_collective_call_terminate_timeout_seconds=1800"
for _flag in FAST_COMPILE_FLAGS:  # cheap compiles (tests/xla_flags.py)
    if _flag.split("=")[0] not in _flags:
        _flags = f"{_flags} {_flag}"
os.environ["XLA_FLAGS"] = _flags.strip()
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# One XLA compilation cache per test session, shared by the xdist workers and the
# subprocesses the tests start (they inherit the environment): the same tiny train steps
# are compiled by many tests. A fresh directory, so every session starts cold.
# Likewise one TFDS data dir (unless TFDS_DATA_DIR is set): the full CIFAR-10 archive is
# prepared at most once per session (a file lock orders concurrent preparers) by whichever
# of its users runs first (tests/data/test_full_cifar.py, the quickstart notebook), and
# nothing is written to ~/tensorflow_datasets.
_OWN_DIRS = []
for _var, _prefix in (("JAX_COMPILATION_CACHE_DIR", "xla"), ("TFDS_DATA_DIR", "tfds")):
    if _var not in os.environ:
        import tempfile

        os.environ[_var] = tempfile.mkdtemp(prefix=f"ssl_jax_test_{_prefix}_")
        _OWN_DIRS.append(os.environ[_var])

import jax  # noqa: E402
import pytest  # noqa: E402

jax.config.update("jax_default_matmul_precision", "highest")


def pytest_sessionfinish(session):
    """The process that made the session directories (not an xdist worker) removes them."""
    if not hasattr(session.config, "workerinput"):
        import shutil

        for path in _OWN_DIRS:
            shutil.rmtree(path, ignore_errors=True)


@pytest.fixture(scope="session")
def n_devices() -> int:
    n = jax.device_count()
    assert n == 8, f"tests expect 8 fake CPU devices, got {n}"
    return n


@pytest.fixture(scope="session")
def cifar_archive():
    """Path to the shared CIFAR-10 JPEG archive (../shared/data), or skip with the reason."""
    from pathlib import Path

    path = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.xz"
    if not path.exists():
        pytest.fail(f"CIFAR-10 archive not found at {path}; see ../shared/data/README.md")
    return path


@pytest.fixture(scope="session")
def cifar_subset_dir(cifar_archive, tmp_path_factory):
    """A real CIFAR-10 subset (20 JPEGs per class and split) in image-folder layout."""
    import subprocess

    root = tmp_path_factory.mktemp("cifar_subset_top")
    subprocess.run(
        ["tar", "-xJf", str(cifar_archive), "-C", str(root), "--wildcards", "*/00[01]?.jpg"],
        check=True,
    )
    assert len(list(root.glob("*/*/*.jpg"))) == 400
    return root


@pytest.fixture(scope="session")
def tiny_data_dir(tmp_path_factory):
    """One TFDS data dir shared by the training tests (the subset is prepared once)."""
    return tmp_path_factory.mktemp("tfds_train")


def load_config(path: str, variant: str = "tiny"):
    """Loads ``experiments/configs/<path>`` the way ``--config path:variant`` does."""
    import importlib.util
    from pathlib import Path

    file = Path(__file__).resolve().parents[1] / "experiments" / "configs" / path
    spec = importlib.util.spec_from_file_location(file.stem, file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config(variant)


def pytest_collection_modifyitems(items):
    """The long ``slow`` tests first (stable order otherwise): with ``--dist worksteal`` the
    worker that starts them hands its short tests to the other, and both end on short ones
    instead of one waiting for the other's minute-long end-to-end test."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
