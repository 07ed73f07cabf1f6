"""Metrics sinks: TensorBoard events (clu) plus a JSON-lines file that scripts can read."""

import json
from pathlib import Path

import jax
import numpy as np
from clu import metric_writers


class JsonlWriter(metric_writers.MetricWriter):
    """Appends ``{"step": s, **scalars}`` lines to ``path``; flushed on every write."""

    def __init__(self, path: str | Path):
        self._path = Path(path)
        self._path.parent.mkdir(parents=True, exist_ok=True)

    def write_scalars(self, step: int, scalars) -> None:
        row = {"step": int(step)}
        row.update({k: float(np.asarray(v)) for k, v in scalars.items()})
        with self._path.open("a") as f:
            f.write(json.dumps(row) + "\n")

    # Only scalars go to JSON; the rest is TensorBoard's job.
    def write_summaries(self, step, values, metadata=None):
        pass

    def write_images(self, step, images):
        pass

    def write_videos(self, step, videos):
        pass

    def write_audios(self, step, audios, *, sample_rate):
        pass

    def write_texts(self, step, texts):
        pass

    def write_histograms(self, step, arrays, num_buckets=None):
        pass

    def write_hparams(self, hparams):
        with self._path.with_name("hparams.json").open("w") as f:
            json.dump(hparams, f, indent=1, default=str)

    def flush(self):
        pass

    def close(self):
        pass


def create_writer(workdir: str | Path) -> metric_writers.MetricWriter:
    """TensorBoard + JSONL on process 0; the other processes write nothing.

    Args:
      workdir: events go to ``workdir/tensorboard``, scalars also to ``workdir/metrics.jsonl``.

    Returns:
      A ``clu.metric_writers.MetricWriter``.
    """
    if jax.process_index() != 0:
        return metric_writers.MultiWriter([])
    workdir = Path(workdir)
    return metric_writers.MultiWriter(
        [
            metric_writers.SummaryWriter(str(workdir / "tensorboard")),
            JsonlWriter(workdir / "metrics.jsonl"),
        ]
    )


def read_jsonl(path: str | Path) -> list[dict]:
    """The records of a ``metrics.jsonl`` file, one dict per logged step, in file order.

    Args:
      path: a file written by the JSONL writer of :func:`create_writer`.

    Returns:
      A list of ``{'step': int, <metric>: float, ...}`` dicts.
    """
    with Path(path).open() as f:
        return [json.loads(line) for line in f if line.strip()]
