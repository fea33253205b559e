"""flashctl doctor: versions, device, ffmpeg, plugins and their load errors."""

from __future__ import annotations

import platform
from importlib.metadata import PackageNotFoundError, version

from rich.table import Table

from .. import __version__
from ..errors import FlashctlError
from .console import out, print_json
from .options import JsonOpt
from .state import state

PACKAGES = ("torch", "diffusers", "transformers", "accelerate", "peft", "pydantic", "pluggy", "typer", "av")


def _pkg(name: str) -> str:
    try:
        return version(name)
    except PackageNotFoundError:
        return "missing"


def _check(checks: list[dict], name: str, fn) -> None:
    try:
        checks.append({"check": name, "ok": True, "detail": fn()})
    except FlashctlError as exc:
        checks.append({"check": name, "ok": False, "detail": str(exc)})
    except Exception as exc:
        checks.append({"check": name, "ok": False, "detail": f"{type(exc).__name__}: {exc}"})


def doctor(json_: JsonOpt = False) -> None:
    """Check the installation; exit 1 if something is broken."""
    checks: list[dict] = [{"check": "python", "ok": True, "detail": platform.python_version()},
                          {"check": "flashctl", "ok": True, "detail": __version__}]
    for pkg in PACKAGES:
        v = _pkg(pkg)
        checks.append({"check": pkg, "ok": v != "missing", "detail": v})

    def torch_device() -> str:
        import torch

        cuda = f"cuda {torch.version.cuda}, {torch.cuda.device_count()} GPU(s)" if torch.cuda.is_available() else "no CUDA"
        return f"{torch.__version__}; {cuda}; {torch.get_num_threads()} CPU threads"

    def ffmpeg() -> str:
        from ..video import find_ffmpeg

        return find_ffmpeg()

    def torchvision_absent() -> str:
        import importlib.util

        if importlib.util.find_spec("torchvision") is not None:
            raise RuntimeError("torchvision is installed; a CUDA build breaks diffusers on CPU machines: pip uninstall torchvision")
        return "absent (good)"

    _check(checks, "torch device", torch_device)
    _check(checks, "ffmpeg", ffmpeg)
    _check(checks, "torchvision", torchvision_absent)
    _check(checks, "config", lambda: state.config().source)
    _check(checks, "motion library", lambda: f"{state.config().library_path()} ({len(state.library(state.config()).names())} actions)")

    def plugin_report() -> str:
        host = state.host(state.config())
        if host.failures:
            raise RuntimeError("; ".join(f"{f.name}: {f.error}" for f in host.failures))
        return f"{len(host.plugins)} loaded: " + ", ".join(p.name for p in host.plugins)

    _check(checks, "plugins", plugin_report)
    if json_:
        print_json(checks)
    else:
        table = Table(title="flashctl doctor")
        for col in ("check", "", "detail"):
            table.add_column(col)
        for c in checks:
            table.add_row(c["check"], "[green]ok[/]" if c["ok"] else "[red]FAIL[/]", str(c["detail"]))
        out.print(table)
    if not all(c["ok"] for c in checks):
        import typer

        raise typer.Exit(1)
