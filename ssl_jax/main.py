"""Pretrain a method from one config file.

    python -m ssl_jax.main --config experiments/configs/simclr_cifar10.py:tiny --workdir DIR
    python -m ssl_jax.main --config experiments/configs/byol_cifar10.py --workdir DIR \
        --config.data.batch_size=256 --evaluate

Checkpoints go to ``DIR/checkpoints``, metrics to ``DIR/metrics.jsonl`` and
``DIR/tensorboard``; with ``--evaluate`` the kNN / linear-probe result to ``DIR/eval.json``.
"""

import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags
from absl import logging as absl_logging
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "experiment config file (path[:variant])")
flags.DEFINE_string("workdir", None, "directory for checkpoints, logs and results")
flags.DEFINE_bool("evaluate", False, "evaluate the final checkpoint (kNN + linear probe)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    import jax

    from ssl_jax.train import loop

    config = FLAGS.config
    if config.distributed.initialize:
        # Multi-host: one process per host (or per GPU); JAX connects them.
        jax.distributed.initialize(
            coordinator_address=config.distributed.coordinator_address or None,
            num_processes=config.distributed.num_processes or None,
            process_id=config.distributed.process_id,
        )
    absl_logging.set_verbosity(absl_logging.WARNING)  # orbax/tfds chatter
    state = loop.train(config, FLAGS.workdir)
    if jax.process_index() == 0:
        print(f"checkpoints: {os.path.join(FLAGS.workdir, 'checkpoints')}")
        print(f"metrics:     {os.path.join(FLAGS.workdir, 'metrics.jsonl')} (+ tensorboard/)")
    if FLAGS.evaluate:
        from ssl_jax import evaluate

        result = evaluate.evaluate_state(config, FLAGS.workdir, state)
        if jax.process_index() == 0:
            print(f"evaluation:  {os.path.join(FLAGS.workdir, 'eval.json')}")
            print(evaluate.format_result(result))


if __name__ == "__main__":
    app.run(main)
