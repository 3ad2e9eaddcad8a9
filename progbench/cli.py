"""The progbench command line: the Typer app, its global options, error handling, and the
registration of the command groups in `progbench.commands`.

Library errors (ProgbenchError) and operating-system errors (a read-only folder, a full disk)
are printed as one message without a traceback, unless `--debug` is given, and the process
exits non-zero. Library warnings are silenced unless `--debug`.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from typing import Annotated

import typer

from progbench import __version__
from progbench.commands import (
    audit,
    cache,
    data,
    evaluate,
    models,
    prepare,
    report,
    sweep,
    train,
    weights,
)
from progbench.commands.app import group
from progbench.commands.output import console, err_console, install_notices
from progbench.errors import ProgbenchError

app = group(
    "Benchmark how to adapt pretrained image backbones to small, imbalanced prognosis tasks.",
    name="progbench",
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        console.print(f"progbench {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    debug: Annotated[
        bool, typer.Option("--debug", help="Show full tracebacks and library warnings.")
    ] = False,
    version: Annotated[
        bool | None,
        typer.Option(
            "--version", callback=_version, is_eager=True, help="Print the version and exit."
        ),
    ] = None,
) -> None:
    """Global options; `main` reads `--debug` itself, before any command runs."""
    install_notices()


for module in (data, prepare, cache, models, train, audit, evaluate, report, sweep, weights):
    module.register(app)


def _quiet_libraries() -> None:
    """No library warning or log record reaches the user's terminal (worker processes inherit
    PYTHONWARNINGS); `--debug` shows them."""
    warnings.simplefilter("ignore")
    os.environ["PYTHONWARNINGS"] = "ignore"
    logging.getLogger().setLevel(logging.ERROR)


def _report_error(message: str, hint: str | None) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    if hint:
        err_console.print(f"[yellow]hint:[/] {hint}", highlight=False, soft_wrap=True)


def _os_error_message(err: OSError) -> str:
    where = err.filename or ""
    if err.filename2:
        where = f"{where} -> {err.filename2}"
    cause = err.strerror or str(err)
    return f"cannot access {where}: {cause}" if where else f"operating-system error: {cause}"


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point. Typer handles usage errors (exit 2); we handle the rest."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if not debug:
        _quiet_libraries()
    try:
        app(args=argv)
    except ProgbenchError as err:
        if debug:
            raise
        _report_error(err.message, err.hint)
        sys.exit(err.exit_code)
    except OSError as err:
        if debug:
            raise
        _report_error(
            _os_error_message(err),
            "Check that the folder exists, is writable and has free space; finished work is "
            "kept, and the same command resumes.",
        )
        sys.exit(1)
    except SystemExit as exit_:
        if exit_.code == 130:  # typer turns Ctrl-C into exit code 130, silently
            err_console.print(
                "[red]interrupted[/]: finished work is kept; run the same command to resume."
            )
        raise


if __name__ == "__main__":  # pragma: no cover
    main()
