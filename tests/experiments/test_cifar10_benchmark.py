"""``experiments/cifar10_benchmark.py`` on the 400-image CIFAR-10 subset: every baseline,
the combined outputs, skipping finished runs and resuming an interrupted one, raw-pixel kNN
against numpy; the wall-time budget (calibration, step count, hard cap); and the CPU and
GPU settings of every registered method."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from experiments import cifar10_benchmark as bench
from experiments.cifar10 import baselines, budget, report, settings
from ssl_jax import build, data
from ssl_jax import config as cfg
from ssl_jax.train.state import create_train_state
from ssl_jax.train.step import make_step_fn

RUNS = ("raw_pixels", "random_init_convnet", "supervised_convnet", "simclr")


def _np_knn_top1(bank, bank_y, queries, query_y, k, temperature, num_classes=10):
    """Weighted kNN (InstDisc): cosine top-k, votes exp(s / T), argmax; percent correct."""
    unit = lambda x: x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    sims = unit(queries.astype(np.float64)) @ unit(bank.astype(np.float64)).T
    idx = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    votes = np.zeros((len(queries), num_classes))
    for i in range(len(queries)):
        np.add.at(votes[i], bank_y[idx[i]], np.exp(sims[i, idx[i]] / temperature))
    return 100.0 * np.mean(votes.argmax(axis=1) == query_y)


def _np_protocols(x_train, x_test):
    """Each centring protocol from its definition, on [0, 1] pixels."""
    tr, te = x_train.astype(np.float64) / 255, x_test.astype(np.float64) / 255
    cm, cs = np.array([0.4914, 0.4822, 0.4465]), np.array([0.2470, 0.2435, 0.2616])
    mean_image, mean_channel = tr.mean(axis=0), tr.mean(axis=(0, 1, 2))
    fns = {
        "per_image_mean": lambda x: x - x.reshape(len(x), -1).mean(1)[:, None, None, None],
        "per_image_channel_mean": lambda x: x - x.mean(axis=(1, 2))[:, None, None, :],
        "dataset_mean_image": lambda x: x - mean_image,
        "dataset_channel_mean": lambda x: x - mean_channel,
        "dataset_channel_standardise": lambda x: (x - cm) / cs,
        "uncentred": lambda x: x,
        "uint8_minus_unit_means": lambda x: 255 * x - cm,
    }
    return {n: (f(tr).reshape(len(tr), -1), f(te).reshape(len(te), -1)) for n, f in fns.items()}


def _common(subset, tmp_path) -> list[str]:
    tfds_dir = tmp_path / "tfds"
    tfds_dir.mkdir(exist_ok=True)
    return [
        *("--dataset", f"folder:{subset}", "--data-dir", str(tfds_dir)),
        *("--variant", "tiny", "--batch-size", "16", "--linear-epochs", "2"),
        *("--methods", "simclr", "--out", str(tmp_path / "out")),
        *("--workdir", str(tmp_path / "work"), "--no-run-figures"),
    ]


@pytest.mark.slow
def test_benchmark_runs_skips_resumes_and_reports(cifar_subset_dir, tmp_path, capsys):
    out, work = tmp_path / "out" / "cifar10_cpu", tmp_path / "work" / "cifar10_cpu"
    common = _common(cifar_subset_dir, tmp_path)
    # 1) One step per training run; raw pixels, random init, supervised, then simclr.
    combined = bench.main([*common, "--steps", "1"])
    records = {n: json.loads((out / f"{n}.json").read_text()) for n in RUNS}
    for name in ("supervised_convnet", "simclr"):
        r = records[name]
        assert r["steps"] == 1 and not r["capped"] and r["calibration"] is None
        assert r["epochs"] == pytest.approx(16 / 200)
        assert r["eval"]["num_train_features"] == 200 and r["eval"]["num_test_features"] == 200
        assert r["curve"]["step"] == [0] and r["config"]["train"]["num_steps"] == 1
        assert r["wall_s"] == pytest.approx(r["segments"][0]["train_s"]) and r["wall_s"] > 0
    assert records["supervised_convnet"]["method"] == "supervised"
    assert records["random_init_convnet"]["steps"] == 0

    rows = json.loads(combined.read_text())
    assert [r["method"] for r in rows] == ["simclr", "supervised", "raw_pixels"]
    for row in rows:
        assert tuple(row) == report.KEYS
        for key in ("knn_top1", "linear_top1"):
            assert 0.0 <= row[key] <= 100.0
    simclr, sup, raw = rows
    assert simclr["random_init_knn_top1"] == records["random_init_convnet"]["knn_top1"]
    assert simclr["supervised_linear_top1"] == records["supervised_convnet"]["linear_top1"]
    assert sup["linear_top1"] == records["supervised_convnet"]["linear_top1"]
    assert simclr["knn_top1"] == records["simclr"]["eval"]["knn_top1"]
    assert raw["random_init_knn_top1"] is None and raw["epochs"] == 0.0

    md = (tmp_path / "out" / "cifar10_cpu.md").read_text()
    for text in ("| `simclr` | convnet | 1 |", "**raw pixels**", "`per_image_mean`", "--steps 1"):
        assert text in md
    assert f"- machine: {report.environment()['machine']} (every record)" in md
    for fig in ("curves", "align_uniform"):
        assert (out / f"{fig}.png").stat().st_size > 1000

    # Raw-pixel kNN (k = 200 = the whole bank here, T = 0.07) against numpy, for every
    # centring protocol on the pipeline's pixels and for PIL's decoding of the folder
    # (float32 there, float64 here: one of the 200 queries, 0.5%, may flip on a near tie).
    source = data.resolve_source(f"folder:{cifar_subset_dir}", data_dir=tmp_path / "tfds")
    (tr_x, tr_y), (te_x, te_y) = (baselines.load_split(source, s) for s in ("train", "test"))
    raw_rec = records["raw_pixels"]
    assert raw_rec["k"] == 200 and raw_rec["knn_top1"] == raw["knn_top1"]
    assert set(raw_rec["protocols"]) == set(baselines.PIXEL_PROTOCOLS)
    for name, (bank, queries) in _np_protocols(tr_x, te_x).items():
        ref = _np_knn_top1(bank, tr_y, queries, te_y, 200, 0.07)
        assert raw_rec["protocols"][name]["knn_top1"] == pytest.approx(ref, abs=0.51), name
    pil = baselines.pil_decoded(cifar_subset_dir)
    (p_tr_x, p_tr_y), (p_te_x, p_te_y) = pil["train"], pil["test"]
    assert sorted(p_tr_y.tolist()) == sorted(tr_y.tolist())
    bank, queries = _np_protocols(p_tr_x, p_te_x)["per_image_mean"]
    ref = _np_knn_top1(bank, p_tr_y, queries, p_te_y, 200, 0.07)
    assert raw_rec["pil"]["per_image_mean"] == pytest.approx(ref, abs=0.51)

    # 2) A rerun skips every finished run and leaves the records alone.
    stamps = {n: (out / f"{n}.json").stat().st_mtime_ns for n in RUNS}
    capsys.readouterr()
    bench.main([*common, "--steps", "1"])
    assert capsys.readouterr().out.count("record exists") == len(RUNS)
    assert stamps == {n: (out / f"{n}.json").stat().st_mtime_ns for n in RUNS}

    # 3) simclr interrupted after its step-1 checkpoint during a 50-step plan (no record; the
    # plan still marks a segment running): the rerun resumes it, whatever --steps says now,
    # counts the interrupted segment up to its last checkpoint, and, with a budget of 0.06 s,
    # the hard cap (1.5 x budget, repeated every second) stops it at a checkpoint early.
    (out / "simclr.json").unlink()
    plan_path = work / "simclr" / "plan.json"
    plan = json.loads(plan_path.read_text())
    started = plan["segments"][0]["started"]
    plan.update(num_steps=50, segments=[], running={"start": started})
    plan_path.write_text(json.dumps(plan))
    bench.main([*common, "--minutes", "0.001", "--no-baselines"])
    again = json.loads((out / "simclr.json").read_text())
    interrupted, resumed = again["segments"]
    assert interrupted["estimated"] and interrupted["train_s"] > 0
    assert resumed["start_step"] == 1 and resumed["capped"] and again["capped"]
    assert 1 < again["steps"] == resumed["end_step"] < 50
    assert again["config"]["train"]["num_steps"] == 50
    assert again["wall_s"] == pytest.approx(interrupted["train_s"] + resumed["train_s"])
    row = json.loads(combined.read_text())[0]
    assert row["epochs"] == pytest.approx(again["steps"] * 16 / 200)
    md = (out.parent / "cifar10_cpu.md").read_text()
    assert f"| `simclr` | convnet | {again['steps']} (capped) |" in md


@pytest.mark.slow
def test_calibration_fits_the_budget(cifar_subset_dir, tmp_path):
    config = settings.cpu_config(
        "simclr",
        variant="tiny",
        overrides={
            "data.dataset": f"folder:{cifar_subset_dir}",
            "data.data_dir": str(tmp_path),
            "data.batch_size": 16,
        },
    )
    config = settings.fit_to_steps(config, "simclr", 3, 200)
    cal = budget.calibrate(config, max_steps=2, max_seconds=0.0)
    assert cal.timed_steps == 2 and cal.step_s > 0 and cal.compile_s > 0 and cal.setup_s > 0
    fit = budget.steps_for_budget(cal, cal.setup_s + cal.compile_s + 10.5 * cal.step_s)
    assert fit == 10
    assert budget.steps_for_budget(cal, 1e-3, min_steps=2) == 2
    with pytest.raises(ValueError, match="budget_s"):
        budget.steps_for_budget(cal, 0.0)


def _traced_step_metrics(c, n: int) -> dict:
    """Shapes of one train step of config ``c`` at its batch size (traced, not compiled)."""
    method, tx, probe_tx = build.method(c, n), build.optimizer(c, n), optax.adam(1e-3)
    x = jax.ShapeDtypeStruct((c.data.batch_size, 32, 32, 3), jnp.uint8)
    y = jax.ShapeDtypeStruct((c.data.batch_size,), jnp.int32)
    key = jax.random.key(0)
    state = jax.eval_shape(
        lambda k, x: create_train_state(method, tx, probe_tx, k, x, num_classes=10), key, x
    )
    step = make_step_fn(method, tx, probe_tx, lr_schedule=build.lr_schedule(c, n))
    return jax.eval_shape(step, state, {"image": x, "label": y}, key)[1]


@pytest.mark.parametrize("method", [m for m in bench.ORDER if settings.config_path(m).exists()])
def test_cpu_and_gpu_settings_build_every_method(method):
    """Every CPU override names an existing field; warm-up steps are whole numbers; the
    method, its schedule and its baseline build, and their train steps trace at batch 256;
    the GPU form is the paper recipe."""
    n = 50_000
    for steps in (7, 333, 1000):
        c = settings.fit_to_steps(settings.cpu_config(method), method, steps, n)
        cfg.validate(c, num_devices=8)
        assert c.train.num_steps == steps and c.model.encoder in ("convnet", "vit_tiny")
        assert (c.eval.knn_k, c.eval.knn_temperature, c.eval.max_train_examples) == (200, 0.07, 0)
        for path, value in settings.CPU_OVERRIDES.get(method, {}).items():
            assert settings.get_path(c, path) == value
        schedule = build.lr_schedule(c, n)  # raises unless the warm-up is a whole step count
        assert float(schedule(steps)) == pytest.approx(0.0, abs=1e-6)
        sup = settings.baseline_config(c)
        assert settings.encoder_key(sup) == settings.encoder_key(c)
        # A ViT's supervised baseline trains with AdamW and a whole-step warm-up (SGD at the
        # ResNet rate diverged).
        vit = c.model.encoder.startswith("vit")
        assert sup.optim.name == ("adamw" if vit else "sgd")
        fitted = settings.fit_to_steps(sup, settings.SUPERVISED, steps, n)
        warmup = fitted.optim.warmup_epochs * cfg.steps_per_epoch(fitted, n)
        assert warmup == pytest.approx(0.05 * steps if vit else 0, abs=2)
        build.lr_schedule(fitted, n)  # raises unless the warm-up is a whole step count
        assert sup.data.batch_size == c.data.batch_size and sup.train.num_steps == steps
        if steps == 333:
            for run in (c, sup):
                assert set(_traced_step_metrics(run, n)) >= {"loss", "probe_top1", "finite"}
        build.method(sup, n)
    g = settings.gpu_config(method)
    assert g.train.epochs == 200 and g.train.num_steps == 0
    assert g.model.encoder == settings.load_config(method).model.encoder
    assert g.data.batch_size in (128, 256, 512)
    build.method(g, n)


def test_report_names_the_machine_of_each_record():
    records = {
        name: {"kind": "method", "machine": machine}
        for name, machine in (("simclr", "A, 2 cores"), ("jigsaw", "B"), ("byol", "A, 2 cores"))
    }
    lines = report._machines(records)
    assert lines == ["- machine A, 2 cores: byol, simclr", "- machine B: jigsaw"]
