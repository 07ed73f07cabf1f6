"""Evaluation of frozen representations: kNN, linear probes, feature extraction, reports.

Figures live in ``ssl_jax.eval.plots`` (imported on demand, it pulls in matplotlib).
"""

from ssl_jax.eval._accuracy import topk_accuracy
from ssl_jax.eval.features import extract_features
from ssl_jax.eval.knn import knn_accuracy, knn_classify, knn_neighbours, l2_normalise
from ssl_jax.eval.linear_probe import (
    feature_standardisation,
    fit_linear_probe,
    init_online_probe,
    linear_logits,
    linear_probe,
    online_probe_loss,
)
from ssl_jax.eval.report import representation_report

__all__ = [
    "extract_features",
    "feature_standardisation",
    "fit_linear_probe",
    "init_online_probe",
    "knn_accuracy",
    "knn_classify",
    "knn_neighbours",
    "l2_normalise",
    "linear_logits",
    "linear_probe",
    "online_probe_loss",
    "representation_report",
    "topk_accuracy",
]
