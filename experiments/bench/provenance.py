"""Which code a measurement was made with: the commit, and whether the tree differed."""

import subprocess
from pathlib import Path

# What a sitting writes into the benchmark's folder: not a change to the code it measures.
OUTPUTS = ("details.json", "results.json", "README.md", "plots", "cpu_split.json")


def commit(root: Path, outputs_dir: Path) -> str:
    """HEAD's short hash in the git tree at ``root``, with ``+dirty`` when tracked files
    differ from it, other than the benchmark's own ``OUTPUTS`` in ``outputs_dir`` (a
    sitting rewrites those as it goes)."""

    def git(*args):
        return subprocess.run(["git", *args], cwd=root, capture_output=True, text=True).stdout

    out, top = outputs_dir.resolve(), root.resolve()
    here = out.relative_to(top) if out.is_relative_to(top) else None
    skip = [f":(exclude){here / name}" for name in OUTPUTS] if here is not None else []
    dirty = git("status", "--porcelain", "--untracked-files=no", "--", ".", *skip).strip()
    return git("rev-parse", "--short", "HEAD").strip() + ("+dirty" if dirty else "")
