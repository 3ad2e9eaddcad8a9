"""The README's command chain works as written: `scripts/readme.py` runs every `console` block in
order in an empty folder and checks each exit code and that the words of each shown output are
still in the real one (issue 12.6). `python scripts/readme.py --write` regenerates the outputs.

The SLURM block is marked `slow`: only `--write` runs it (against `scripts/slurm-local.sh up`);
here the same sweep through the SLURM executor is tests/test_sweep.py's requeue test."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


# What tests/conftest.py sets for the suite: a user's shell has none of it.
TEST_ONLY_ENV = ("HF_HUB_OFFLINE", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "CUDA_VISIBLE_DEVICES")


@pytest.mark.slow
def test_the_readme_chain_runs_as_written(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k not in TEST_ONLY_ENV}
    env["CUDA_VISIBLE_DEVICES"] = ""  # a GPU machine's chain would print other timings only
    proc = subprocess.run(
        [sys.executable, str(REPO / "scripts" / "readme.py"), "--workdir", str(tmp_path / "w")],
        capture_output=True,
        text=True,
        timeout=1200,
        env=env,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-6000:]
    assert "$ progbench sweep run study.yaml --workers 2" in proc.stdout


def test_the_checker_catches_a_changed_output(tmp_path: Path) -> None:
    """The check can fail: a README whose shown output holds a word the command never prints."""
    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import readme
    finally:
        sys.path.remove(str(REPO / "scripts"))
    fake = tmp_path / "README.md"
    fake.write_text(
        "<!-- readme: file=hello.txt -->\n```text\nhello there\n```\n\n"
        "```console\n$ cat hello.txt\nhello there\n$ false\n$ echo $?\n1\n```\n\n"
        "```console\n$ cat hello.txt\nhello elsewhere\n$ true\n```\n"
    )
    work = tmp_path / "w"
    work.mkdir()
    assert readme.run(False, work, 60, readme_path=fake) == 1
    fake.write_text(fake.read_text().replace("hello elsewhere", "hello there"))
    assert readme.run(False, work, 60, readme_path=fake) == 0
    fake.write_text(fake.read_text().replace("$ echo $?\n1", "$ echo $?\n0"))
    assert readme.run(False, work, 60, readme_path=fake) == 1
