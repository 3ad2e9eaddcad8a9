"""Running the progbench command line as a user does: in this process through `progbench.cli.main`
(its error handler included), or as a subprocess of the installed console script."""

from __future__ import annotations

import contextlib
import io
import os
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import psutil

# `python -m progbench.cli`, not .venv/bin/progbench: a worktree's hand-made shim there calls
# main() without pip's `if __name__ == "__main__"` guard, so every forkserver worker (which
# re-imports the main script) would run the command again.
PROGBENCH = (sys.executable, "-m", "progbench.cli")
# The tiny twin with random weights on 32-pixel images: the cheapest real backbone.
TINY = ("--backbone", "tiny-resnet", "--weights", "random", "--image-size", "32")


@dataclass(frozen=True)
class CliResult:
    code: int
    out: str
    err: str

    @property
    def text(self) -> str:
        return self.out + self.err


def cli(*args: object) -> CliResult:
    """`progbench ARGS` in this process: exit code, stdout and stderr, as a terminal would show
    them (errors as one message, no traceback)."""
    from progbench.cli import main

    out, err = io.StringIO(), io.StringIO()
    saved = os.environ.get("PYTHONWARNINGS")  # main() silences library warnings process-wide
    code = 0
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            main([str(a) for a in args])
    except SystemExit as exit_:
        code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
    finally:
        if saved is None:
            os.environ.pop("PYTHONWARNINGS", None)
        else:
            os.environ["PYTHONWARNINGS"] = saved
    return CliResult(code, out.getvalue(), err.getvalue())


def task_of(manifest: Path) -> Path:
    """The task YAML tests.helpers.cohorts.write_cohort writes beside `manifest`."""
    return manifest.parent / "tasks" / "severity.yaml"


def done_files(runs: Path) -> list[Path]:
    """The DONE markers of a run tree, runs replaced by --force excluded."""
    return sorted(p for p in runs.rglob("DONE") if ".replaced" not in p.parts)


def lp(task: Path, runs: Path, cache: Path, *args: object) -> CliResult:
    """`progbench train TASK --strategy lp` on the tiny twin, 2-fold k-fold (`args` may give
    another --scheme: the last one given wins), plus `args`."""
    return cli("train", task, *TINY, "--strategy", "lp", "--scheme", "kfold", "--folds", "2",
               *args, "--runs", runs, "--cache-dir", cache)  # fmt: skip


def cli_env(cache: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PROGBENCH_CACHE=str(cache), CUDA_VISIBLE_DEVICES="", HF_HUB_OFFLINE="1")
    env.pop("PYTHONWARNINGS", None)
    return env | extra


def cli_process(
    *args: object, cache: Path, cwd: Path | None = None, timeout: float = 120, **env: str
) -> subprocess.CompletedProcess[str]:
    """`progbench ARGS` as a subprocess with stdout and stderr on pipes (not a terminal)."""
    return subprocess.run(
        [*PROGBENCH, *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=cli_env(cache, **env),
        timeout=timeout,
    )


def patched(*assignments: str) -> tuple[str, ...]:
    """The command line that runs progbench after `module.NAME = value` assignments, e.g.
    `progbench.train.writers.PROCESS_WRITERS_FROM = 4`, to reach a code path on a tiny input."""
    lines = []
    for a in assignments:
        target, value = (x.strip() for x in a.split("=", 1))
        module, name = target.rsplit(".", 1)
        lines.append(f"import {module}; {module}.{name} = {value}")
    return (sys.executable, "-c", "; ".join([*lines, "from progbench.cli import main", "main()"]))


class Watched:
    """A running `progbench` subprocess whose stderr lines are read as they come."""

    def __init__(
        self,
        *args: object,
        cache: Path,
        cwd: Path | None = None,
        command: tuple[str, ...] = PROGBENCH,
        **env: str,
    ) -> None:
        self.proc = subprocess.Popen(
            [*command, *map(str, args)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=cwd,
            env=cli_env(cache, **env),
            start_new_session=True,  # its own process group, as a shell gives a foreground job
        )
        self.lines: list[str] = []  # stderr
        self.out_lines: list[str] = []
        self._readers = [
            threading.Thread(target=self._read, args=(pipe, into), daemon=True)
            for pipe, into in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out_lines))
        ]
        for t in self._readers:
            t.start()

    @staticmethod
    def _read(pipe: object, into: list[str]) -> None:
        for line in pipe:  # type: ignore[attr-defined]
            into.append(line)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_for(self, text: str, timeout: float = 120) -> bool:
        """True once a stderr line holds `text`; False if the process ended or time ran out."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(text in line for line in self.lines):
                return True
            if self.proc.poll() is not None:
                self._readers[0].join(5)
                return any(text in line for line in self.lines)
            time.sleep(0.02)
        return False

    def finish(self, timeout: float = 120) -> tuple[int, str, str]:
        """(exit code, stdout, stderr) once it ends."""
        code = self.proc.wait(timeout=timeout)
        for t in self._readers:
            t.join(5)
        return code, "".join(self.out_lines), "".join(self.lines)


def descendants(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def pool_workers(pid: int) -> list[psutil.Process]:
    """The forkserver workers started by process `pid` (children of its fork server)."""
    out = []
    for p in descendants(pid):
        try:
            if "multiprocessing.forkserver" in " ".join(p.cmdline()) and any(
                "multiprocessing.forkserver" in " ".join(q.cmdline()) for q in [p.parent()] if q
            ):
                out.append(p)
        except psutil.Error:
            continue
    return out


def alive(procs: list[psutil.Process]) -> list[int]:
    out = []
    for p in procs:
        try:
            if p.is_running() and p.status() != psutil.STATUS_ZOMBIE:
                out.append(p.pid)
        except psutil.NoSuchProcess:
            continue
    return out


def started_with_workers(watched: Watched, timeout: float = 180) -> list[psutil.Process]:
    """The pool workers of a running command, once it has some (its own still running)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and watched.proc.poll() is None:
        workers = pool_workers(watched.pid)
        if workers:
            return workers
        time.sleep(0.02)
    raise AssertionError(f"no worker process seen: {''.join(watched.lines)[-2000:]}")


def gone_within(procs: list[psutil.Process], seconds: float) -> list[int]:
    """The pids of `procs` still alive after up to `seconds`."""
    end = time.monotonic() + seconds
    while alive(procs) and time.monotonic() < end:
        time.sleep(0.05)
    return alive(procs)
