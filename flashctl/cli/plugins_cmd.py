"""flashctl plugins: what is installed, what each provides, and what failed to load."""

from __future__ import annotations

from typing import Annotated, Optional

import typer
from rich.table import Table

from .console import out, print_json
from .options import JsonOpt
from .state import state


def plugins(kind: Annotated[Optional[str], typer.Option("--kind", help="Only components of this kind.")] = None,
            json_: JsonOpt = False) -> None:
    """List plugins, their components and load errors."""
    host = state.host(state.config())
    specs = host.registry.specs(kind) if kind else host.registry.specs()
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
    for col in ("kind", "name", "plugin", "summary"):
        table.add_column(col)
    for c in data["components"]:
        table.add_row(c["kind"], c["name"], c["plugin"], c["summary"])
    out.print(table)
    for f in data["failures"]:
        out.print(f"[red]failed[/] plugin {f['name']} ({f['source']}): {f['error']}")
    if data["disabled"]:
        out.print(f"disabled: {', '.join(data['disabled'])}")
