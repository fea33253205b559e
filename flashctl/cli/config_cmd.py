"""flashctl config show|validate."""

from __future__ import annotations

import typer

from ..config import config_to_dict, validate_components
from .console import err, out, print_json
from .options import JsonOpt, SetOpt
from .state import state

app = typer.Typer(help="Show or check the resolved project config.", no_args_is_help=True)


@app.command("show")
def show(set_: SetOpt = None, json_: JsonOpt = False) -> None:
    """Print the resolved config (defaults < flashctl.toml < --set)."""
    config = state.config(set_)
    data = config_to_dict(config)
    if json_:
        print_json(data)
        return
    err.print(f"[dim]source: {config.source}[/]")
    for section, values in data.items():
        if isinstance(values, dict):
            out.print(f"[bold]\\[{section}][/]")
            for key, value in values.items():
                out.print(f"{key} = {value!r}")
        else:
            out.print(f"{section} = {values!r}")


@app.command("validate")
def validate(set_: SetOpt = None) -> None:
    """Check the config and every chosen component's options; exit 2 on the first problem."""
    config = state.config(set_)
    validate_components(config, state.host(config).registry)
    err.print(f"[green]ok[/] {config.source}")
