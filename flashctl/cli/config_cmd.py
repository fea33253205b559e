"""flashctl config show|validate."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from ..config import config_to_dict, validate_components, value_sources
from ..config_discovery import CONFIG_ENV
from ..toml_writer import to_toml
from .console import err, print_json
from .options import JsonOpt, SetOpt
from .state import state

app = typer.Typer(help="Show or check the resolved project config.", no_args_is_help=True)


@app.command("show")
def show(
    set_: SetOpt = None,
    json_: JsonOpt = False,
    sources: Annotated[bool, typer.Option("--sources", help="After each value, say which file set it "
                                          "(or 'default', or '--set').")] = False,
) -> None:
    """Print the resolved config as TOML (defaults < the config file < --set).

    The file used, and how it was found, is named on stderr.
    """
    config = state.config(set_)
    data = config_to_dict(config)
    if json_:
        print_json({"config": data, "source": config.source, "found_by": config.found_by,
                    "sources": value_sources(config, list(set_ or []))} if sources else data)
        return
    how = {"--config": "--config", CONFIG_ENV: f"${CONFIG_ENV}", "project": "nearest flashctl.toml",
           "user": "user config", "defaults": "no config file found"}.get(config.found_by, config.found_by)
    err.print(f"[dim]source: {config.source} ({how})[/]")
    sys.stdout.write(to_toml(data, value_sources(config, list(set_ or [])) if sources else None))


@app.command("validate")
def validate(set_: SetOpt = None) -> None:
    """Check the config and every chosen component's options; exit 2 on the first problem."""
    config = state.config(set_)
    validate_components(config, state.host(config).registry)
    err.print(f"[green]ok[/] {config.source}")
