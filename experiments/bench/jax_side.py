"""The ssl_jax side of a benchmark case: the library's own step, built from a config.

``JaxCase`` builds ``ssl_jax.build.method`` from ``experiments/configs/<method>_cifar10.py``
and compiles ``ssl_jax.train.step.jit_step(make_step_fn(...))``, exactly as the training
loop does (with ``steps_per_call=loop_steps_per_call(config)``, the loop's steps per
call). Two input modes:

- ``views="given"``: the step gets views that are already augmented (the same arrays the
  PyTorch peer gets). The views are packed into one ``[B, H_total, 32, 3]`` image (stacked
  along the height) and the method's ``view_fn`` is replaced by one that slices them out, so
  everything else in the step is untouched. This is the head-to-head against PyTorch.
- ``views="device"``: the library's default, uint8 images in and the recipe's augmentation
  inside the step (reported separately, with the input-pipeline numbers).
"""

import dataclasses
import importlib.util
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ssl_jax import augment, build
from ssl_jax import config as config_lib
from ssl_jax.config import variant
from ssl_jax.train.state import create_train_state
from ssl_jax.train.step import data_mesh, jit_step, make_step_fn

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
NUM_TRAIN_EXAMPLES = 50_000  # CIFAR-10: fixes the schedules (warm-up, EMA, frozen prototypes)


def load_config(
    method: str, *, encoder: str, batch: int, dataset: str = "cifar10", **overrides
) -> ml_collections.ConfigDict:
    """``experiments/configs/<method>_<dataset>.py`` with the case's encoder, batch and
    ``{'dotted.key': value}`` overrides."""
    path = CONFIGS / f"{method}_{dataset}.py"
    spec = importlib.util.spec_from_file_location(f"bench_config_{method}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    c = variant(module.get_config(), "")
    c.model.encoder = encoder
    c.data.batch_size = batch
    for key, value in overrides.items():
        node = c
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        node[leaf] = value
    return c


def view_sides(c: ml_collections.ConfigDict) -> list[int]:
    """Side of every view the method trains on, globals first."""
    return [
        side
        for _, side in augment.view_sizes(
            c.augment.recipe,
            image_size=c.data.image_size,
            num_local_crops=c.augment.num_local_crops,
            local_size=c.augment.local_size,
        )
    ]


def make_views(c: ml_collections.ConfigDict, seed: int = 0) -> tuple[list[np.ndarray], np.ndarray]:
    """Real augmented views (the config's recipe on random uint8 images) and labels."""
    rng = np.random.default_rng(seed)
    b, s = c.data.batch_size, c.data.image_size
    images = rng.integers(0, 256, (b, s, s, 3), dtype=np.uint8)
    fn = jax.jit(lambda k, x: build.view_fn(c)(k, x))
    views = [np.asarray(v) for v in fn(jax.random.key(seed), images)]
    return views, rng.integers(0, 10, b).astype(np.int32)


def pack(views: list[np.ndarray]) -> np.ndarray:
    """Views stacked along the height into one ``[B, sum(sides), max(side), 3]`` batch."""
    width = max(v.shape[2] for v in views)
    rows = [np.pad(v, ((0, 0), (0, 0), (0, width - v.shape[2]), (0, 0))) for v in views]
    return np.concatenate(rows, axis=1)


def unpack_fn(sides: list[int]):
    """A ``view_fn`` that slices :func:`pack`'s views back out of one image."""
    offsets = np.cumsum([0, *sides])

    def view_fn(rng, image):
        del rng  # the views are given
        return [image[:, o : o + s, :s, :] for o, s in zip(offsets, sides, strict=False)]

    return view_fn


@dataclasses.dataclass
class JaxCase:
    """A compiled ssl_jax step and its state, ready to be timed.

    Attributes:
      config: the case's config.
      views: ``'given'`` or ``'device'`` (see the module docstring).
      tuned: compile with ssl_jax's step options (False: XLA's defaults), the before/after
        switch of ``ssl_jax.train.xla_cpu``.
      steps_per_call: steps per compiled call (``jit_step(..., steps_per_call=)``; every
        step of a call gets the same batch). :meth:`step` runs one call.
    """

    config: ml_collections.ConfigDict
    views: str = "given"
    tuned: bool = True
    steps_per_call: int = 1
    compile_s: float = 0.0

    def setup(self, given_views: list[np.ndarray] | None, labels: np.ndarray) -> "JaxCase":
        c, n = self.config, NUM_TRAIN_EXAMPLES
        method = build.method(c, n)
        if self.views == "given":
            method = dataclasses.replace(method, view_fn=unpack_fn(view_sides(c)))
            images = pack(given_views)
        else:
            rng = np.random.default_rng(1)
            s = c.data.image_size
            images = rng.integers(0, 256, (c.data.batch_size, s, s, 3), dtype=np.uint8)
        tx, probe_tx = build.optimizer(c, n), optax.adam(c.optim.probe_lr)
        mesh = data_mesh()
        init = jax.jit(
            lambda key, x: create_train_state(
                method, tx, probe_tx, key, x, num_classes=c.data.num_classes
            ),
            out_shardings=NamedSharding(mesh, P()),
        )
        self.state = init(jax.random.key(0), jnp.asarray(images))
        batch, spec = {"image": images, "label": labels}, P("data")
        if self.steps_per_call > 1:
            k = self.steps_per_call
            batch, spec = {name: np.stack([x] * k) for name, x in batch.items()}, P(None, "data")
        self.batch = jax.device_put(batch, NamedSharding(mesh, spec))
        self.key = jax.random.key(1)
        step = jit_step(
            make_step_fn(method, tx, probe_tx, lr_schedule=build.lr_schedule(c, n)),
            mesh,
            tuned=self.tuned,
            steps_per_call=self.steps_per_call,
        )
        t0 = time.perf_counter()
        self.compiled = step.lower(self.state, self.batch, self.key).compile()
        self.compile_s = time.perf_counter() - t0
        return self

    def memory_analysis(self) -> dict[str, float]:
        """XLA's accounting of the compiled step, MiB (temp = scratch of one step)."""
        m = self.compiled.memory_analysis()
        mib = 1 / 2**20
        return {
            "xla_temp_mib": m.temp_size_in_bytes * mib,
            "xla_args_mib": m.argument_size_in_bytes * mib,
            "xla_out_mib": m.output_size_in_bytes * mib,
        }

    def flops(self) -> float:
        """FLOPs of one step from XLA's cost analysis (0 where the backend gives none)."""
        cost = self.compiled.cost_analysis()
        cost = cost[0] if isinstance(cost, list) else cost
        return float((cost or {}).get("flops", 0.0))

    def step(self) -> dict[str, float]:
        """One call: ``steps_per_call`` steps."""
        self.state, metrics = self.compiled(self.state, self.batch, self.key)
        return jax.block_until_ready(metrics)

    def steps(self, n: int) -> None:
        """``n`` steps (a multiple of ``steps_per_call``), one call after another."""
        if n % self.steps_per_call:
            raise ValueError(f"{n} steps is not a whole number of {self.steps_per_call}-step calls")
        for _ in range(n // self.steps_per_call):
            self.step()


def loop_steps_per_call(c: ml_collections.ConfigDict) -> int:
    """The steps per call the training loop compiles for ``c`` on this backend."""
    return config_lib.steps_per_call(c, jax.default_backend())
