"""Run the CLI in-process the way a shell would: argv in, (exit code, stdout, stderr) out."""

from __future__ import annotations

from dataclasses import dataclass

from flashctl.cli import main


@dataclass
class Run:
    code: int
    out: str
    err: str


def run(capsys, *argv: str) -> Run:
    capsys.readouterr()
    try:
        main([str(a) for a in argv])
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    captured = capsys.readouterr()
    return Run(code, captured.out, captured.err)
