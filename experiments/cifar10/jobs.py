"""The benchmark's runs: train a method (or the supervised baseline) to its budget and
evaluate it, evaluate a random initialisation, evaluate raw pixels. Each writes its record
through :class:`Bench`, which skips runs that have one and rebuilds the combined report."""

import argparse
import dataclasses
import logging
import shutil
import time
from pathlib import Path

from experiments.cifar10 import baselines, budget, notes, report, settings
from ssl_jax import config as cfg
from ssl_jax import data, evaluate
from ssl_jax.train import metrics_log

log = logging.getLogger("cifar10_benchmark")
FIGURES = ("tsne", "neighbours")


@dataclasses.dataclass
class Bench:
    """What every job needs: arguments, data, where records and work dirs go."""

    args: argparse.Namespace
    source: data.DataSource
    num_train: int
    records: Path
    work: Path
    command: str
    stem: str
    redone: set = dataclasses.field(default_factory=set)  # runs --force has redone already

    @property
    def budget_s(self) -> float | None:
        return None if (self.args.gpu or self.args.steps) else 60.0 * self.args.minutes

    @property
    def figures(self) -> bool:
        """Per-run figures (t-SNE, neighbours): off with ``--no-run-figures``."""
        return not self.args.no_run_figures

    def overrides(self) -> dict:
        a = self.args
        o = {"data.dataset": a.dataset, "data.data_dir": a.data_dir}
        if a.batch_size:
            o["data.batch_size"] = a.batch_size
        if a.linear_epochs:
            o["eval.linear_epochs"] = a.linear_epochs
        if a.eval_train_examples:
            o["eval.max_train_examples"] = a.eval_train_examples
        return o

    def method_config(self, method: str):
        if self.args.gpu:
            return settings.gpu_config(method, epochs=self.args.epochs, overrides=self.overrides())
        return settings.cpu_config(method, variant=self.args.variant, overrides=self.overrides())

    def done(self, name: str) -> bool:
        path = self.records / f"{name}.json"
        if path.exists() and (not self.args.force or name in self.redone):
            log.info("%s: record exists (%s), skipped", name, path)
            return True
        return False

    def fresh_workdir(self, name: str) -> Path:
        wd = self.work / name
        if self.args.force and wd.exists():
            shutil.rmtree(wd)
        return wd

    def save(self, record: dict) -> None:
        record = {**record, "command": self.command, **report.environment()}
        report.write_json(self.records / f"{record['name']}.json", record)
        self.redone.add(record["name"])
        log.info("%s: record written", record["name"])
        paths = report.rebuild(self.records.parent, self.stem, header=self.header())
        log.info("rebuilt %s", ", ".join(str(p) for p in paths.values()))

    def copy_figures(self, name: str, plots: Path) -> None:
        for fig in FIGURES:
            if (plots / f"{fig}.png").exists():
                shutil.copyfile(plots / f"{fig}.png", self.records / f"{name}_{fig}.png")

    def header(self) -> dict:
        recs = report.load_records(self.records)
        budgets = sorted({r["budget_s"] for r in recs.values() if r.get("budget_s")})
        if self.args.gpu:
            length = f"{self.args.epochs} epochs"
        elif budgets:
            length = " / ".join(f"{b / 60:g} min" for b in budgets)
        else:
            length = "a fixed number of steps (--steps)"
        hw = "GPU" if self.args.gpu else "CPU"
        return {
            "title": f"CIFAR-10 on {hw}: every method for {length} of training",
            "summary": notes.summary(self.args.gpu, length, self.source.description),
            "environment": report.environment(),
            "notes": notes.sections(
                self.args.gpu, margin=self.args.budget_margin, hard_cap=self.args.hard_cap
            ),
        }


def _metrics_rows(workdir: Path) -> list[dict]:
    path = workdir / "metrics.jsonl"
    if not path.exists():
        return []
    by_step = {r["step"]: r for r in metrics_log.read_jsonl(path)}  # a resume re-logs steps
    return [by_step[s] for s in sorted(by_step)]


def _settings(config, num_steps: int, num_train: int, method: str) -> dict:
    per_epoch = cfg.steps_per_epoch(config, num_train)
    return {
        "optimizer": config.optim.name,
        "peak_lr": cfg.peak_learning_rate(config),
        "batch_size": config.data.batch_size,
        "warmup_steps": round(min(num_steps // 2, config.optim.warmup_epochs * per_epoch)),
        "notes": settings.supervised_notes(config)
        if method == settings.SUPERVISED
        else settings.schedule_notes(method),
    }


def _wall_time(plan: dict, workdir: Path) -> float:
    """Training seconds of the finished segments, plus an interrupted one up to its last
    checkpoint."""
    total = sum(s["train_s"] for s in plan.get("segments", []))
    running = plan.get("running")
    if running:
        files = [p.stat().st_mtime for p in (workdir / "checkpoints").rglob("*") if p.is_file()]
        if files:
            total += max(0.0, max(files) - running["start"])
    return total


def train_job(bench: Bench, name: str, kind: str, method: str, config, order: int) -> None:
    """Trains one run (a method or the supervised baseline) to its budget, evaluates it and
    writes its record; resumes a run interrupted before."""
    if bench.done(name):
        return
    wd = bench.fresh_workdir(name)
    wd.mkdir(parents=True, exist_ok=True)
    plan_path = wd / "plan.json"
    plan = report.load_json(plan_path) if plan_path.exists() else None
    if plan is None:
        plan = _plan(bench, name, method, config)
        report.write_json(plan_path, plan)
    else:
        log.info("%s: resuming the planned %d steps", name, plan["num_steps"])
    run_config = (
        config
        if bench.args.gpu
        else settings.fit_to_steps(config, method, plan["num_steps"], bench.num_train)
    )
    if plan.get("running"):  # the previous segment was interrupted
        plan.setdefault("segments", []).append(
            {"train_s": _wall_time({"running": plan["running"]}, wd), "estimated": True}
        )
    plan["running"] = {"start": time.time()}
    report.write_json(plan_path, plan)
    cap = bench.args.hard_cap * bench.budget_s if bench.budget_s and bench.args.hard_cap else None
    state, info = budget.train_capped(run_config, wd, cap_s=cap)
    info["started"] = plan.pop("running")["start"]
    plan.setdefault("segments", []).append(info)
    report.write_json(plan_path, plan)

    t0 = time.perf_counter()
    result = evaluate.evaluate_state(run_config, wd, state, plots=bench.figures)
    eval_s = time.perf_counter() - t0
    bench.copy_figures(name, wd / "plots")
    steps = int(result["step"])
    bench.save(
        {
            "name": name,
            "kind": kind,
            "order": order,
            "method": run_config.method,
            "encoder_key": settings.encoder_key(run_config),
            "steps": steps,
            "epochs": steps * run_config.data.batch_size / bench.num_train,
            "wall_s": sum(s["train_s"] for s in plan["segments"]),
            "budget_s": bench.budget_s,
            "capped": any(s.get("capped") for s in plan["segments"]),
            "calibration": plan.get("calibration"),
            "segments": plan["segments"],
            "eval_s": eval_s,
            **{k: result[k] for k in ("knn_top1", "knn_top5", "linear_top1", "linear_top5")},
            **{k: result[k] for k in ("std", "eff_rank", "alignment", "uniformity")},
            "eval": result,
            "settings": _settings(run_config, steps, bench.num_train, method),
            "config": run_config.to_dict(),
            "curve": report.curve(_metrics_rows(wd)),
            "workdir": str(wd),
        }
    )


def _plan(bench: Bench, name: str, method: str, config) -> dict:
    """The run's length: fixed (``--steps``, ``--gpu``) or what fits in the budget."""
    if bench.args.gpu:
        return {"num_steps": cfg.total_steps(config, bench.num_train), "calibration": None}
    if bench.args.steps:
        return {"num_steps": bench.args.steps, "calibration": None}
    provisional = settings.fit_to_steps(config, method, 1000, bench.num_train)
    cal = budget.calibrate(
        provisional,
        max_steps=bench.args.calibration_steps,
        max_seconds=bench.args.calibration_seconds,
    )
    steps = budget.steps_for_budget(
        cal, bench.budget_s, min_steps=2, margin=bench.args.budget_margin
    )
    log.info(
        "%s: compile %.1fs, %.3fs/step -> %d steps in %.1f min",
        name,
        cal.compile_s,
        cal.step_s,
        steps,
        bench.args.minutes,
    )
    return {"num_steps": steps, "calibration": dataclasses.asdict(cal)}


def random_init_job(bench: Bench, encoder_key: str, config) -> None:
    """Evaluates the supervised baseline's initial state: the encoder, untrained."""
    name = f"random_init_{encoder_key}"
    if bench.done(name):
        return
    wd = bench.work / name
    shutil.rmtree(wd, ignore_errors=True)  # holds no checkpoint by construction
    state = budget.initial_state(config, wd)
    result = evaluate.evaluate_state(config, wd, state, plots=bench.figures)
    bench.copy_figures(name, wd / "plots")
    bench.save(
        {
            "name": name,
            "kind": "random_init",
            "method": "random_init",
            "encoder_key": encoder_key,
            "steps": 0,
            "epochs": 0.0,
            "wall_s": 0.0,
            **{k: result[k] for k in ("knn_top1", "knn_top5", "linear_top1", "linear_top5")},
            **{k: result[k] for k in ("std", "eff_rank", "alignment", "uniformity")},
            "eval": result,
            "workdir": str(wd),
        }
    )


def raw_pixels_job(bench: Bench, eval_config) -> None:
    name = "raw_pixels"
    if bench.done(name):
        return
    wd = bench.work / name
    a = bench.args
    if a.dataset == "cifar10":
        archive = data.SHARED_CIFAR10_ARCHIVE if bench.source.name == "cifar10_jpeg" else None
    else:
        archive = Path(a.dataset.removeprefix("folder:")).expanduser()
    e = eval_config.eval
    result = baselines.raw_pixel_eval(
        bench.source,
        k=e.knn_k,
        temperature=e.knn_temperature,
        linear_epochs=e.linear_epochs,
        linear_lr=e.linear_lr,
        recipe="simclr_cifar",
        seed=eval_config.seed,
        max_train_examples=e.max_train_examples or None,
        archive=archive,
        plots_dir=wd / "plots" if bench.figures else None,
    )
    bench.copy_figures(name, wd / "plots")
    bench.save(
        {
            "name": name,
            "kind": "raw_pixels",
            "method": name,
            "encoder_key": "pixels",
            "steps": 0,
            "epochs": 0.0,
            "wall_s": 0.0,
            "k": min(e.knn_k, result["num_train"]),
            "temperature": e.knn_temperature,
            **result,
        }
    )
