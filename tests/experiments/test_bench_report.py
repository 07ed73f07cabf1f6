"""``experiments/bench/report.py``'s header: which sitting measured what, on which machine."""

from experiments.bench import report


def _machine(cpu: str) -> dict:
    return dict(cpu=cpu, cores=2, memory_gib=23.5, load_average=[0.5, 1.0, 1.5])


def _run(first_cpu: str, last_cpu: str) -> dict:
    step = 'step {"batch": 64, "case": "simclr_convnet", "reps": 7} {}'
    pipeline = 'pipeline {"data_dir": null, "quick": false} {}'
    return dict(
        machine=_machine(last_cpu),
        sittings=[
            dict(date="2026-11-30T00:00:00+00:00", command="run.py", commit="aaa"),
            dict(
                date="2026-11-30T05:00:00+00:00",
                command="run.py --resume",
                commit="bbb",
                machine=_machine(first_cpu),
            ),
            dict(
                date="2026-12-01T17:00:00+00:00",
                command="run.py --resume --redo step",
                commit="ccc",
                machine=_machine(last_cpu),
            ),
        ],
        stamps={
            pipeline: dict(utc="2026-11-30T05:10:00+00:00", commit="bbb"),
            step: dict(utc="2026-12-01T17:30:00+00:00", commit="ccc"),
        },
    )


def test_each_sitting_names_its_machine_and_what_it_measured():
    lines = report._sittings(_run("Xeon", "EPYC"))
    assert lines[0] == "- measured in 3 sittings (`--resume`):"
    first, second, third = lines[1:]
    assert " on " not in first and first.endswith("measured the rest")
    assert "commit bbb on Xeon, 2 cores usable, 24 GiB:" in second
    assert second.endswith("measured 1: pipeline")
    assert "commit ccc on EPYC, 2 cores usable, 24 GiB:" in third
    assert third.endswith("measured 1: step simclr_convnet b64")


def test_a_later_sitting_whose_measurements_were_all_redone_says_so():
    run = _run("EPYC", "EPYC")
    # A fourth sitting measures the step again: the third keeps nothing.
    run["sittings"].append(dict(date="2026-12-02T09:00:00+00:00", command="x", commit="ddd"))
    step = next(k for k in run["stamps"] if k.startswith("step"))
    run["stamps"][step] = dict(utc="2026-12-02T09:30:00+00:00", commit="ddd")
    first, _, third, fourth = report._sittings(run)[1:]
    assert first.endswith("measured the rest")  # before any measurement was stamped
    assert third.endswith("measured none kept (all measured again later)")
    assert fourth.endswith("measured 1: step simclr_convnet b64")


def test_machine_line_says_last_sitting_only_when_machines_differ():
    mixed = report._machine_line(_run("Xeon", "EPYC"))
    same = report._machine_line(_run("EPYC", "EPYC"))
    tail = ": EPYC, 2 cores usable, 24 GiB; load average at start 0.5, 1.0, 1.5"
    assert mixed == "- machine of the last sitting" + tail
    assert same == "- machine" + tail


def _step_row(case: str, xla_default: bool) -> dict:
    names = ("jax", "torch", "torch_cl") + (("jax_xla_default",) if xla_default else ())
    timings = {n: dict(median_s=2.0 if n == "jax_xla_default" else 1.0) for n in names}
    return dict(
        case=case,
        batch=64,
        steps_per_call=4,
        jax_step_s=1.0,
        torch_step_s=1.0,
        timings=timings,
        peak_added_mib={n: 100.0 for n in names},
        xla_memory=dict(jax=dict(xla_temp_mib=50.0)),
        compile_s=dict(jax=3.0),
    )


def test_change_one_is_its_before_after_and_rows_without_the_contender_are_left_out():
    k = dict(before=4, after=4)
    ba = dict(before_s=2.0, after_s=1.0, xla_flops=dict(before=8e9, after=4e9), steps_per_call=k)
    run = dict(
        xla_options=dict(case="simclr_resnet18", batch=64, **ba),
        steps=[_step_row("old_row", xla_default=True), _step_row("new_row", xla_default=False)],
    )
    lines = report.speedup_table(run)
    assert lines[2] == "| simclr_resnet18 | 64 | 2.000 | 1.000 | 2.00x | 2.0 / 1.0 |"  # per step
    rows = [x for x in lines[3:] if x.startswith("| ") and "row" in x]
    assert [r.split(" | ")[0] for r in rows] == ["| old_row"]
    assert "| 2.00x |" in rows[0]
    memory = report.memory_table(run)
    assert memory[2].startswith("| old_row | 64 | 100 | 100 |")
    assert memory[3].startswith("| new_row | 64 | 100 | - |")
    assert report.speedup_table(dict(steps=[]))[0] == report.NOT_YET[0]
