"""Evaluate a pretrained checkpoint: kNN, linear probe, collapse monitors, figures.

    python -m ssl_jax.evaluate --workdir DIR          # latest checkpoint of a main.py run

Writes ``DIR/eval.json`` (and appends to ``DIR/eval_history.jsonl``) and figures under
``DIR/plots/``: training curves, the alignment-uniformity plane, a t-SNE map of test
features, and a nearest-neighbour grid.
"""

import json
import logging
import os
from pathlib import Path
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import app, flags
from absl import logging as absl_logging

from ssl_jax import augment, build, data, metrics
from ssl_jax.eval import extract_features, knn_accuracy, knn_neighbours, linear_probe
from ssl_jax.train.state import TrainState
from ssl_jax.train.step import data_mesh

log = logging.getLogger(__name__)
_MONITOR_EXAMPLES = 2048
_GRID_MAX_SIDE = 64  # keep images for the neighbour grid only for small-image datasets


def encode_fn_for(config: ml_collections.ConfigDict, method):
    """``(variables, uint8 images) -> features``: the method's own eval preprocessing."""
    recipe = augment.get_recipe(config.augment.recipe)

    def encode(variables, images):
        x = augment.normalize(images.astype(jnp.float32) / 255.0, recipe.mean, recipe.std)
        return method.encode(variables["params"], variables["batch_stats"], x)

    return encode


def _batches(config, source, split, keep_images: list | None):
    """This process's padded eval batches; optionally keeps a copy of the images."""
    it = data.eval_batches(
        source,
        split=split,
        batch_size=config.eval.batch_size // jax.process_count(),
        image_size=config.data.image_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        skip_corrupt=config.data.skip_corrupt,
    )
    for batch in it:
        if keep_images is not None:
            keep_images.append(batch["image"][batch["mask"]])
        yield batch


def _monitors(config, method, variables, images: np.ndarray, seed: int) -> dict[str, float]:
    """Collapse monitors on test images: std, eff. rank, uniformity; alignment of 2 views."""
    images = jnp.asarray(images[:_MONITOR_EXAMPLES])
    keys = jax.random.split(jax.random.key(seed), (2, images.shape[0]))
    views = jax.jit(method.views)
    first = views(keys[0], images)
    # Single-view recipes (rotation, MAE, colourisation): a second draw gives the pair.
    v1, v2 = first[:2] if len(first) >= 2 else (first[0], views(keys[1], images)[0])
    enc = jax.jit(lambda x: method.encode(variables["params"], variables["batch_stats"], x))
    z1, z2 = enc(v1), enc(v2)
    return {
        "std": float(metrics.embedding_std(z1)),
        "eff_rank": float(metrics.effective_rank(z1)),
        "alignment": float(metrics.alignment(z1, z2)),
        "uniformity": float(metrics.uniformity(z1)),
    }


def evaluate_state(
    config: ml_collections.ConfigDict,
    workdir: str | Path,
    state: TrainState,
    *,
    plots: bool = True,
) -> dict[str, Any]:
    """Evaluates ``state`` and writes ``eval.json`` (+ history and figures) to ``workdir``."""
    workdir = Path(workdir)
    source = data.resolve_source(
        config.data.dataset,
        data_dir=config.data.data_dir or None,
        skip_corrupt=config.data.skip_corrupt,
    )
    method = build.method(config, source.num_examples(config.data.train_split))
    mesh = data_mesh()
    variables = {"params": state.params, "batch_stats": state.batch_stats}
    encode = encode_fn_for(config, method)
    small = config.data.image_size <= _GRID_MAX_SIDE
    train_images: list | None = [] if small else None
    test_images: list = []
    max_train = config.eval.max_train_examples or None
    train_x, train_y = extract_features(
        encode,
        _batches(config, source, config.data.train_split, train_images),
        mesh=mesh,
        variables=variables,
        max_examples=max_train,
    )
    test_x, test_y = extract_features(
        encode,
        _batches(config, source, config.data.eval_split, test_images),
        mesh=mesh,
        variables=variables,
    )
    num_classes = source.num_classes
    knn = knn_accuracy(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        k=min(config.eval.knn_k, len(train_x)),
        temperature=config.eval.knn_temperature,
        mesh=mesh,
    )
    lin = linear_probe(
        train_x,
        train_y,
        test_x,
        test_y,
        num_classes=num_classes,
        epochs=config.eval.linear_epochs,
        lr=config.eval.linear_lr,
        seed=config.seed,
    )
    test_imgs = np.concatenate(test_images)
    result = {
        "method": config.method,
        "step": int(jax.device_get(state.step)),
        "knn_top1": knn["top1"],
        "knn_top5": knn["top5"],
        "linear_top1": lin["top1"],
        "linear_top5": lin["top5"],
        "num_train_features": len(train_x),
        "num_test_features": len(test_x),
        "data": source.description,
        **_monitors(config, method, variables, test_imgs, config.seed),
    }
    if jax.process_index() == 0:
        workdir.mkdir(parents=True, exist_ok=True)
        (workdir / "eval.json").write_text(json.dumps(result, indent=1))
        with (workdir / "eval_history.jsonl").open("a") as f:
            f.write(json.dumps(result) + "\n")
        if plots:
            bank_imgs = np.concatenate(train_images)[: len(train_x)] if train_images else None
            write_plots(workdir, test_x, test_y, test_imgs, train_x, bank_imgs, source)
    return result


def write_plots(workdir, test_x, test_y, test_imgs, train_x, bank_imgs, source) -> list[Path]:
    """Training curves, alignment-uniformity plane, t-SNE map, nearest-neighbour grid."""
    from ssl_jax.eval import plots

    out = workdir / "plots"
    out.mkdir(exist_ok=True)
    written = []
    if (workdir / "metrics.jsonl").exists():
        written.append(plots.plot_training_curves(workdir / "metrics.jsonl", out / "curves.png"))
    history = [json.loads(line) for line in (workdir / "eval_history.jsonl").open()]
    points = [dict(label=f"step {h['step']}", **h) for h in history]
    written.append(plots.plot_alignment_uniformity(points, out / "align_uniform.png"))
    written.append(
        plots.plot_embedding_map(
            test_x, test_y, out / "tsne.png", class_names=source.class_names, max_points=2000
        )
    )
    if bank_imgs is not None:
        queries = np.arange(0, len(test_x), max(1, len(test_x) // 8))[:8]
        sims, idx = knn_neighbours(train_x, test_x[queries], k=8)
        written.append(
            plots.plot_nearest_neighbours(
                test_imgs[queries],
                bank_imgs[idx],
                out / "neighbours.png",
                similarities=sims,
                class_names=source.class_names,
            )
        )
    return written


def format_result(r: dict[str, Any]) -> str:
    return (
        f"{r['method']} step {r['step']}: kNN top-1 {r['knn_top1']:.2f}%  linear top-1 "
        f"{r['linear_top1']:.2f}%  std {r['std']:.4f}  eff.rank {r['eff_rank']:.1f}  "
        f"align {r['alignment']:.3f}  unif {r['uniformity']:.3f}"
    )


def load_config(workdir: str | Path) -> ml_collections.ConfigDict:
    path = Path(workdir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: is {workdir} the work dir of a main.py run?")
    return ml_collections.ConfigDict(json.loads(path.read_text()))


def evaluate_workdir(workdir: str | Path) -> dict[str, Any]:
    """Restores the latest checkpoint of ``workdir`` and evaluates it."""
    from ssl_jax.train.loop import Trainer

    config = load_config(workdir)
    trainer = Trainer(config, workdir)
    if trainer.ckpt.latest_step() is None:
        raise FileNotFoundError(f"no checkpoint under {Path(workdir) / 'checkpoints'}")
    sample = next(trainer.batches(0))["image"]
    state = trainer.restore_or_init(sample)
    return evaluate_state(config, workdir, state)


def _cli() -> None:
    flags.DEFINE_string("workdir", None, "work dir of a main.py run")
    flags.mark_flag_as_required("workdir")

    def main(argv: list[str]) -> None:
        del argv
        absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/tfds chatter
        workdir = flags.FLAGS.workdir
        result = evaluate_workdir(workdir)
        if jax.process_index() == 0:
            print(format_result(result))
            print(f"wrote {Path(workdir) / 'eval.json'}")

    app.run(main)


if __name__ == "__main__":
    _cli()
