"""The flashctl command line: a thin Typer layer over the library.

stdout carries results (``--json`` where a script wants them); progress, notes and errors go to
stderr. Exit codes: 0 ok, 1 error, 2 usage or config. ``--debug`` shows tracebacks.
"""

from __future__ import annotations

import errno
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from .. import __version__
from ..errors import FlashctlError, storage_error
from .state import state

def _version(value: bool) -> None:
    if value:
        typer.echo(f"flashctl {__version__}")
        raise typer.Exit()


def root(
    config: Annotated[Optional[Path], typer.Option(
        "--config", "-c", metavar="PATH",
        help="Config file. Default: $FLASHCTL_CONFIG, else the nearest flashctl.toml in this folder or one above, "
             "else the user's flashctl/flashctl.toml (XDG config folder), else built-in defaults.")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks on errors.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Print the version.")] = False,
) -> None:
    """Learn a human action from a few videos, then animate any still image with it."""
    state.config_path = config
    state.debug = state.debug or debug


def build_app() -> typer.Typer:
    """A fresh app with every built-in command (plugin commands are added by ``main``)."""
    from . import animate, config_cmd, doctor, eval_cmd, export, motions, plugins_cmd, prepare, train

    app = typer.Typer(
        name="flashctl",
        help="Learn a human action from a few videos, then animate any still image with it.",
        no_args_is_help=True,
        add_completion=False,
        pretty_exceptions_enable=False,
        rich_markup_mode=None,
        context_settings={"help_option_names": ["-h", "--help"]},
    )
    app.callback()(root)
    app.command("prepare")(prepare.prepare)
    app.command("train")(train.train)
    app.command("animate")(animate.animate)
    app.command("eval")(eval_cmd.eval_)
    app.add_typer(motions.app, name="motions")
    app.command("export")(export.export)
    app.command("plugins")(plugins_cmd.plugins)
    app.add_typer(config_cmd.app, name="config")
    app.command("doctor")(doctor.doctor)
    return app


def _plugin_commands(app: typer.Typer, argv: list[str]) -> None:
    """Let plugins add commands. Runs before argv is parsed, so it reads [plugins] from the config cheaply."""
    from ..config import load_config

    path = None
    for i, arg in enumerate(argv):
        if arg in ("--config", "-c") and i + 1 < len(argv):
            path = Path(argv[i + 1])
        elif arg.startswith("--config="):
            path = Path(arg.split("=", 1)[1])
    try:
        config = load_config(path)  # None: discovered as every command does (FLASHCTL_CONFIG, walk up, user)
        host = state.host(config)
    except FlashctlError:
        return  # the command itself reports config errors properly
    host.pm.hook.register_commands(app=app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point: run the app, turn errors into one line and an exit code.

    A reader that closes stdout early (``flashctl ... | head -1``) stops the work: exit 1, nothing on stderr.
    """
    try:
        _main(argv)
    except SystemExit:
        _flush_stdout()
        raise
    except BrokenPipeError:
        _closed_pipe()
    _flush_stdout()


def _flush_stdout() -> None:
    """Flush results now, so a closed pipe is not an "Exception ignored" note and exit 120 at interpreter exit."""
    try:
        sys.stdout.flush()
    except BrokenPipeError:
        _closed_pipe()


def _closed_pipe() -> None:
    """The reader of stdout went away: point stdout at /dev/null (nothing left to flush at exit), exit 1 quietly."""
    import click

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)
    except (OSError, ValueError, AttributeError):  # not a real file (captured in tests): just never flush again
        sys.stdout = click.utils.PacifyFlushWrapper(sys.stdout)
    raise SystemExit(1) from None


def _main(argv: list[str] | None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    state.reset(debug="--debug" in argv)
    if not state.debug:  # library chatter (dtype notes, load bars) is noise on a CLI; --debug keeps it
        for var in ("DIFFUSERS_VERBOSITY", "TRANSFORMERS_VERBOSITY"):
            os.environ.setdefault(var, "error")
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bar
    app = build_app()
    _plugin_commands(app, argv)
    command = typer.main.get_command(app)
    try:  # standalone mode: usage errors print usage and exit 2, --help exits 0
        command.main(argv, prog_name="flashctl", standalone_mode=True)
    except FlashctlError as exc:
        if state.debug:
            raise
        from .console import print_error

        print_error(exc.message, exc.hint)
        raise SystemExit(exc.exit_code) from None
    except KeyboardInterrupt:
        raise SystemExit(130) from None
    except Exception as exc:  # anything unexpected: one line, the traceback only with --debug
        if isinstance(exc, BrokenPipeError) or getattr(exc, "errno", None) == errno.EPIPE:
            _closed_pipe()  # stdout's reader left (click handles this inside a command; here: outside one)
        if state.debug:
            raise
        from .console import print_error

        fixable = storage_error(exc) if isinstance(exc, OSError) else None  # disk full, read-only, a file in the way
        if fixable is not None:
            print_error(fixable.message, fixable.hint)
        else:
            print_error(f"internal error: {type(exc).__name__}: {exc}",
                        "re-run with --debug for the traceback and report it")
        raise SystemExit(1) from None
