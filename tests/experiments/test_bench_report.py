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


def test_machine_line_says_last_sitting_only_when_machines_differ():
    mixed = report._machine_line(_run("Xeon", "EPYC"))
    same = report._machine_line(_run("EPYC", "EPYC"))
    tail = ": EPYC, 2 cores usable, 24 GiB; load average at start 0.5, 1.0, 1.5"
    assert mixed == "- machine of the last sitting" + tail
    assert same == "- machine" + tail
