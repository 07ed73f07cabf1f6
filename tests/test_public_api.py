"""The public API stays documented: every public module has an explicit ``__all__`` without
duplicates, every exported name exists and has a docstring (classes: also their public
methods and properties), packages export what they import, ``docs/api.md`` is what
``experiments/make_api_docs.py`` generates, and the excerpts quoted in
``docs/adding_a_method.md`` are still in the files they name."""

import importlib
import inspect
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from experiments import make_api_docs

REPO = Path(__file__).resolve().parents[1]
MODULES = make_api_docs.MODULES


@pytest.fixture(scope="module", params=MODULES)
def module(request):
    return importlib.import_module(request.param)


def test_the_documented_modules_are_the_ones_the_issue_names():
    for name in ("losses", "metrics", "augment", "methods", "train", "eval"):
        assert f"ssl_jax.{name}" in MODULES


def test_all_is_explicit_and_has_no_duplicates(module):
    names = getattr(module, "__all__", None)
    assert isinstance(names, list | tuple) and names, f"{module.__name__} has no __all__"
    duplicates = sorted({n for n in names if names.count(n) > 1})
    assert not duplicates, f"{module.__name__}.__all__ repeats {duplicates}"
    assert all(isinstance(n, str) and not n.startswith("_") for n in names)


def test_every_exported_name_exists_and_has_a_docstring(module):
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names undefined {missing}"
    undocumented = [n for n in module.__all__ if not make_api_docs.doc_of(module, n).strip()]
    assert not undocumented, (
        f"{module.__name__}: no docstring on {undocumented} (constants need a string literal "
        "right after the assignment)"
    )


def test_public_methods_of_public_classes_have_docstrings(module):
    undocumented = []
    for name in module.__all__:
        cls = getattr(module, name)
        if not inspect.isclass(cls):
            continue
        for member, func, is_property in make_api_docs.public_members(cls):
            if not make_api_docs.member_doc(cls, member, func, is_property).strip():
                undocumented.append(f"{name}.{member}")
    assert not undocumented, f"{module.__name__}: no docstring on {undocumented}"


PLAIN_MODULES = ("ssl_jax.metrics", "ssl_jax.pretrained")
PACKAGES = [m for m in MODULES if m not in PLAIN_MODULES]


@pytest.mark.parametrize("package", PACKAGES)
def test_packages_export_every_public_name_they_import(package):
    """A name a helper imports into a package ``__init__`` must also go into ``__all__``."""
    module = importlib.import_module(package)
    assert hasattr(module, "__path__")
    unexported = sorted(
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not inspect.ismodule(value)
        and getattr(value, "__module__", "").startswith("ssl_jax.")
        and name not in module.__all__
    )
    assert not unexported, f"{module.__name__} imports but does not export {unexported}"


def test_lazy_train_package_resolves_every_name_to_its_definition():
    train = importlib.import_module("ssl_jax.train")
    from ssl_jax.train import loop, optim, state, step

    assert sorted(train.__all__) == sorted(train._SOURCES)
    assert train.Trainer is loop.Trainer and train.lars is optim.lars
    assert train.TrainState is state.TrainState and train.jit_step is step.jit_step
    assert set(train.__all__) <= set(dir(train))
    with pytest.raises(AttributeError, match="no attribute 'not_a_name'"):
        train.not_a_name


def test_importing_methods_and_losses_stays_light():
    """``ssl_jax.methods`` imports ``ssl_jax.train.ema``: the train package must not drag in
    tf.data / Orbax (checked in a fresh interpreter)."""
    code = (
        "import sys, ssl_jax, ssl_jax.losses, ssl_jax.metrics, ssl_jax.methods, ssl_jax.train;"
        "heavy = [m for m in ('tensorflow', 'orbax.checkpoint', 'clu') if m in sys.modules];"
        "assert not heavy, heavy"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]


# -- the generator ---------------------------------------------------------------------------
def test_docstring_sections_are_split_like_google_style():
    doc = textwrap.dedent(
        """\
        Short summary
        on two lines.

        More text.

        Args:
          x: first
            continued.
          y (int): second.

        Returns:
          The thing.
        """
    )
    summary, sections = make_api_docs.split_docstring(doc)
    assert summary == "Short summary on two lines."
    assert make_api_docs.section_entries(sections["Args"]) == [
        "x: first continued.",
        "y (int): second.",
    ]
    assert sections["Returns"] == ["The thing."]


def test_signatures_come_from_the_source_without_addresses():
    from ssl_jax.models import MLP
    from ssl_jax.train import decay_mask

    sig = make_api_docs.format_signature("decay_mask", decay_mask, wrap=False)
    assert sig == (
        "decay_mask(params: PyTree, *, exclude: ParamPredicate | None = is_bias_or_norm) -> PyTree"
    )
    mlp = make_api_docs.format_signature("MLP", MLP, wrap=False)
    assert "parent" not in mlp and "0x" not in mlp and "hidden_dims: Sequence[int]" in mlp


def test_api_page_is_up_to_date():
    """Fails after a docstring or ``__all__`` changes: run experiments/make_api_docs.py."""
    text = make_api_docs.render()
    assert text == make_api_docs.render(), "the generator is not deterministic"
    assert " at 0x" not in text
    committed = (REPO / "docs" / "api.md").read_text(encoding="utf-8")
    assert committed == text, "docs/api.md is stale: run python experiments/make_api_docs.py"


# -- the guide -------------------------------------------------------------------------------
GUIDE = REPO / "docs" / "adding_a_method.md"


def _excerpts() -> list[tuple[str, str]]:
    """``(path, code)`` for each block preceded by ``<!-- excerpt: path -->`` in the guide."""
    pattern = re.compile(r"<!-- excerpt: (\S+) -->\n```[a-z]*\n(.*?)```", re.S)
    return pattern.findall(GUIDE.read_text(encoding="utf-8"))


def test_guide_excerpts_match_the_code():
    excerpts = _excerpts()
    assert len(excerpts) >= 8
    stale = [
        path
        for path, code in excerpts
        if not (REPO / path).is_file() or code not in (REPO / path).read_text(encoding="utf-8")
    ]
    assert not stale, f"docs/adding_a_method.md quotes code no longer in {stale}"


def test_guide_paths_exist():
    text = GUIDE.read_text(encoding="utf-8")
    paths = set(re.findall(r"`((?:ssl_jax|tests|experiments|docs)/[\w/.]+\.(?:py|md))`", text))
    assert paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert not missing, f"docs/adding_a_method.md names missing files {missing}"
