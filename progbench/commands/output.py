"""Where the CLI's output goes, and how progress is shown, on a terminal and off one.

On a terminal: rich tables and live progress bars. Off a terminal (a SLURM log, `| tee`, a
file): tables at their natural width, never squeezed to 80 columns, and progress as plain
timestamped lines, written at least every `PROGRESS_INTERVAL_S` seconds by a ticker thread, so a
cluster log shows that a long step is alive.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from typing import Any

from rich.console import Console, RenderableType
from rich.measure import Measurement

ProgressFn = Callable[[int, int], None]
# Seconds between two plain progress lines when output is not a terminal (tests shorten it).
PROGRESS_INTERVAL_ENV = "PROGBENCH_PROGRESS_INTERVAL"
PROGRESS_INTERVAL_S = 15.0
_WIDE = 100_000  # console width off a terminal: tables keep their natural width


def _console(stderr: bool) -> Console:
    probe = Console(stderr=stderr)
    if probe.is_terminal:
        return probe
    return Console(stderr=stderr, width=_WIDE, soft_wrap=True)


console = _console(stderr=False)
err_console = _console(stderr=True)


def print_wide(renderable: RenderableType) -> None:
    """Print at the renderable's natural width, even on a narrow terminal (no squashing)."""
    natural = Measurement.get(console, console.options.update(width=_WIDE), renderable).maximum
    out = console if natural <= console.width else Console(width=natural)
    out.print(renderable)


def _interval() -> float:
    try:
        return max(0.05, float(os.environ.get(PROGRESS_INTERVAL_ENV, PROGRESS_INTERVAL_S)))
    except ValueError:
        return PROGRESS_INTERVAL_S


def _stamp() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S")


class _PlainProgress:
    """Timestamped progress lines for logs: one when work starts, one at least every interval
    (from a ticker thread, also while no update arrives), and one when it ends."""

    def __init__(self, description: str) -> None:
        self.description = description
        self.done = 0
        self.total: int | None = None
        self.start = time.perf_counter()
        self.started = False
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._tick, daemon=True, name="progbench-progress")

    def _line(self) -> None:
        elapsed = time.perf_counter() - self.start
        total = "?" if self.total is None else str(self.total)
        pct = f" ({100 * self.done / self.total:.0f}%)" if self.total else ""
        err_console.print(
            f"{_stamp()} {self.description}: {self.done}/{total}{pct}, {elapsed:.0f} s",
            highlight=False,
            markup=False,
        )

    def update(self, done: int, total: int) -> None:
        with self.lock:
            first = not self.started
            self.done, self.total, self.started = done, total, True
            if first and done < total:
                self._line()
                self.thread.start()

    def _tick(self) -> None:
        while not self.stop.wait(_interval()):
            with self.lock:
                self._line()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join()
            self._line()


@contextmanager
def progress(description: str) -> Iterator[ProgressFn]:
    """A progress display driven by `update(done, total)`. Nothing is shown until the first
    update with work left, so a step that finds its work already done prints no empty bar."""
    if not err_console.is_terminal:
        plain = _PlainProgress(description)
        try:
            yield plain.update
        finally:
            plain.close()
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TimeRemainingColumn

    bar = Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=err_console,
        transient=False,
    )
    task: list[TaskID] = []

    def update(done: int, total: int) -> None:
        if not task:
            if done >= total:
                return
            bar.start()
            task.append(bar.add_task(description, total=total))
        bar.update(task[0], completed=done, total=total)

    try:
        yield update
    finally:
        if task:
            bar.stop()


@contextmanager
def staged_progress(description: str) -> Iterator[Callable[[str, int, int], None]]:
    """`progress` for work in stages (evaluation: runs, then groups), driven by
    `update(stage, done, total)`: one display per stage, each closed before the next opens."""
    with ExitStack() as stage_stack:
        current: list[Any] = []  # [stage, its update]

        def update(stage: str, done: int, total: int) -> None:
            if not current or current[0] != stage:
                stage_stack.close()  # the stage before is over: its last line first
                current[:] = [stage, stage_stack.enter_context(progress(f"{description} {stage}"))]
            current[1](done, total)

        yield update


def lock_notice(text: str) -> None:
    """How a command says that it waits for a lock another process holds (progbench.locking)."""
    err_console.print(f"[yellow]note:[/] {text}", highlight=False, soft_wrap=True)


def install_notices() -> None:
    """Let the library's lock waits reach the terminal (called before every command)."""
    from progbench.locking import set_notice

    set_notice(lock_notice)
