"""The benchmarked cases: a method's CIFAR-10 config with an encoder, at a batch size."""

import dataclasses

import ml_collections

from experiments.bench import jax_side


@dataclasses.dataclass(frozen=True)
class Case:
    """One benchmarked training step.

    Attributes:
      name: the ``case`` field of ``results.json``.
      method: ``experiments/configs/<method>_cifar10.py``.
      encoder: ``resnet18`` (CIFAR stem) or ``convnet``.
      overrides: further config settings, ``{'dotted.key': value}``.
    """

    name: str
    method: str
    encoder: str
    overrides: tuple[tuple[str, object], ...] = ()

    def config(self, batch: int) -> ml_collections.ConfigDict:
        return jax_side.load_config(
            self.method, encoder=self.encoder, batch=batch, **dict(self.overrides)
        )


CASES = (
    Case("simclr_resnet18", "simclr", "resnet18"),
    Case("byol_resnet18", "byol", "resnet18"),
    Case("swav_multicrop_resnet18", "swav", "resnet18"),  # 2 x 32 px + 6 x 16 px crops
    Case("barlow_twins_resnet18", "barlow_twins", "resnet18"),
    Case("simclr_convnet", "simclr", "convnet"),
)
BATCHES = (64, 256)


def get(name: str) -> Case:
    for case in CASES:
        if case.name == name:
            return case
    raise ValueError(f"unknown case {name!r}; known: {', '.join(c.name for c in CASES)}")
