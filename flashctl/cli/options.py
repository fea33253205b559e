"""Option types shared by several commands."""

from __future__ import annotations

from typing import Annotated, Optional

import typer

SetOpt = Annotated[
    Optional[list[str]],
    typer.Option("--set", "-s", metavar="KEY=VALUE", help="Override a config value, e.g. --set train.steps=50 (repeatable)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
