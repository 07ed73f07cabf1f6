"""config.from_file: ``path.py[:variant]`` plus dotted overrides, as the --config flag."""

import os

import pytest

from ssl_jax import config as cfg
from tests.conftest import load_config


def test_loads_like_the_config_flag_from_any_cwd(tmp_path, monkeypatch):
    expected = load_config("byol_cifar10.py", "tiny")
    rel = "experiments/configs/byol_cifar10.py:tiny"
    monkeypatch.chdir(tmp_path)  # not the repo root: found relative to the repository
    assert cfg.from_file(rel).to_dict() == expected.to_dict()
    paper_recipe = load_config("byol_cifar10.py", "").to_dict()
    assert cfg.from_file(rel.split(":")[0]).to_dict() == paper_recipe
    absolute = os.path.join(cfg._REPO_ROOT, rel)
    assert cfg.from_file(absolute).to_dict() == expected.to_dict()


def test_overrides_set_dotted_keys_and_keep_types():
    c = cfg.from_file(
        "experiments/configs/simclr_cifar10.py:demo",
        {"train.num_steps": 7, "data.dataset": "folder:/x", "optim.base_lr": 1},
    )
    assert c.train.num_steps == 7 and c.data.dataset == "folder:/x"
    assert c.optim.base_lr == 1.0 and isinstance(c.optim.base_lr, float)
    assert c.data.batch_size == 256  # the rest of the demo variant is untouched


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"train.num_step": 3}, r"train has no field 'num_step'. Did you mean 'num_steps'"),
        ({"trian.num_steps": 3}, r"the config has no field 'trian'. Did you mean 'train'"),
        ({"train.num_steps.x": 3}, r"train.num_steps has no field 'x'"),
        ({"train.num_steps": "many"}, r"override 'train.num_steps': .*cannot be casted"),
    ],
)
def test_bad_overrides_name_the_key(overrides, message):
    with pytest.raises(ValueError, match=message):
        cfg.from_file("experiments/configs/simclr_cifar10.py:tiny", overrides)


def test_bad_paths_and_variants(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"nope\.py not found"):
        cfg.from_file("experiments/configs/nope.py")
    with pytest.raises(ValueError, match="unknown config variant 'huge'"):
        cfg.from_file("experiments/configs/simclr_cifar10.py:huge")
    (tmp_path / "empty.py").write_text("X = 1\n")
    with pytest.raises(ValueError, match="defines no get_config"):
        cfg.from_file(tmp_path / "empty.py")
