"""flashctl plugins: what is installed, what each provides, and what failed to load."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from ..registry import KINDS
from .console import out, print_json
from .options import JsonOpt
from .state import state


def _kind(text: str) -> str:
    """``metric``, ``metrics``, ``video-format`` or ``video_formats`` -> the registry's kind."""
    kind = text.strip().lower().replace("-", "_")
    for name in KINDS:
        if kind in (name, f"{name}s"):
            return name
    raise typer.BadParameter(f"unknown kind {text!r}; one of: {', '.join(KINDS)}", param_hint="--kind")


def plugins(kind: Annotated[Optional[str], typer.Option("--kind", help="Only components of this kind "
                                                        f"({', '.join(KINDS)}; plural too).")] = None,
            json_: JsonOpt = False) -> None:
    """List plugins, their components with their traits, and load errors."""
    host = state.host(state.config())
    specs = host.registry.specs(_kind(kind)) if kind else host.registry.specs()
    data = {
        "plugins": [{"name": p.name, "distribution": p.distribution, "version": p.version, "source": p.source,
                     "hooks": p.hooks} for p in host.plugins],
        "components": [{"kind": s.kind, "name": s.name, "plugin": s.plugin, **s.traits.model_dump(mode="json")}
                       for s in specs],
        "failures": [{"name": f.name, "source": f.source, "error": f.error} for f in host.failures],
        "disabled": host.disabled,
    }
    if json_:
        print_json(data)
        return
    table = Table(title="components")
    for col in ("kind", "name", "plugin", "summary", "traits"):
        table.add_column(col)
    for s in specs:
        table.add_row(s.kind, s.name, s.plugin, Text(s.traits.summary), Text(s.traits.describe()))
    out.print(table)
    for f in data["failures"]:
        out.print(f"[red]failed[/] plugin {f['name']} ({f['source']}): {escape(f['error'])}")
    if data["disabled"]:
        out.print(f"disabled: {', '.join(data['disabled'])}")
