"""flashctl motions list|show|verify|rm|pack|unpack|card: the shared motion library."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from .console import err, out, print_json
from .options import JsonOpt
from .state import state

app = typer.Typer(help="Browse, check and remove learned actions.", no_args_is_help=True)


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _library():
    return state.library(state.config())


LibraryOpt = Annotated[Optional[Path], typer.Option(
    "--library", metavar="PATH", help="The motion library folder (default: [library] path of the config).")]


def _library_at(path: Path | None):
    from ..library import MotionLibrary

    return MotionLibrary(path) if path is not None else _library()


@app.command("list")
def list_(json_: JsonOpt = False) -> None:
    """Show every action in the library."""
    lib = _library()
    infos = [lib.info(name) for name in lib.names()]
    if json_:
        print_json([asdict(i) for i in infos])
        return
    table = Table(title=f"motion library {lib.root}")
    for col in ("action", "clips", "trained", "backbone", "last trained", "size"):
        table.add_column(col, justify="right" if col in ("clips", "size") else "left")
    for i in infos:
        table.add_row(i.name, str(i.clips), "broken" if i.broken else "yes" if i.trained else "no", i.backbone or "-",
                      i.last_trained or "-", _size(i.size_bytes))
    out.print(table)
    for i in infos:
        if i.broken:
            err.print(f"[red]broken[/] {i.name}: {escape(i.broken)}")
    if not infos:
        err.print("no actions yet: create one with `flashctl prepare ACTION --clips DIR --prompt \"...\"`")


@app.command("show")
def show(action: Annotated[str, typer.Argument()], json_: JsonOpt = False) -> None:
    """Show one action: manifest, clips, weights and provenance."""
    lib = _library()
    lib.require(action)
    manifest = lib.manifest(action)
    data = {"info": asdict(lib.info(action)), "manifest": manifest.model_dump(mode="json"),
            "weights": lib.weights_config(action), "provenance": lib.provenance(action)}
    if json_:
        print_json(data)
        return
    info = data["info"]
    out.print(f"[bold]{action}[/]  {manifest.prompt!r}")
    out.print(f"  clips: {info['clips']}   trained: {'yes' if info['trained'] else 'no'}   size: {_size(info['size_bytes'])}")
    for clip in manifest.clips:
        out.print(f"  - {clip.file}  sha256 {clip.sha256[:12]}  {clip.source or ''}")
    if data["weights"]:
        w = data["weights"]
        out.print(f"  backbone: {w.get('backbone')}  last trained: {info['last_trained']}")


@app.command("verify")
def verify(actions: Annotated[Optional[list[str]], typer.Argument(help="Actions (default: all).")] = None,
           json_: JsonOpt = False) -> None:
    """Recompute clip and weight hashes; exit 1 if anything drifted."""
    lib = _library()
    names = actions or lib.names()
    report = {name: [asdict(d) for d in lib.verify(name)] for name in names}
    if json_:
        print_json(report)
    else:
        for name, drifts in report.items():
            if not drifts:
                out.print(f"[green]ok[/]     {name}")
            for d in drifts:
                detail = f" ({escape(d['detail'])})" if d["detail"] else ""
                out.print(f"[red]drift[/]  {name}: {escape(d['file'])}: {d['problem']}{detail}")
    if any(report.values()):
        raise typer.Exit(1)


@app.command("rm")
def rm(action: Annotated[str, typer.Argument()],
       yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False) -> None:
    """Delete an action (clips, weights, history) from the library."""
    lib = _library()
    path = lib.require(action)
    if not yes:
        typer.confirm(f"delete {path} and everything in it?", abort=True, err=True)
    lib.remove(action)
    err.print(f"removed {action}")


@app.command("pack")
def pack(action: Annotated[str, typer.Argument()],
         output: Annotated[Optional[Path], typer.Option(
             "--output", "-o", metavar="FILE",
             help="The archive to write (default: ACTION-RUNID.flashmotion.tar.gz here; a folder: that name in it).")] = None,
         clips: Annotated[bool, typer.Option("--clips", help="Also pack the training clips motion.toml lists.")] = False,
         overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing archive.")] = False,
         library: LibraryOpt = None, json_: JsonOpt = False) -> None:
    """Pack an action's current version (weights, provenance, preview, motion.toml) into one archive for another site.

    Eval samples and caches stay behind; clips only with --clips. Prints the archive's path.
    """
    from ..pack import pack as pack_motion

    result = pack_motion(_library_at(library), action, output, clips=clips, overwrite=overwrite)
    if json_:
        print_json(asdict(result))
        return
    typer.echo(result.archive)
    err.print(f"packed '{action}' run {result.run_id}: {result.files} files, {_size(result.bytes)}")


@app.command("unpack")
def unpack(archive: Annotated[Path, typer.Argument(metavar="FILE", help="A .flashmotion.tar.gz from `motions pack`.")],
           make_current: Annotated[bool, typer.Option(
               "--make-current", help="Make the archive's run current even when the library's is newer.")] = False,
           library: LibraryOpt = None, json_: JsonOpt = False) -> None:
    """Check an archive in full (hashes, manifest, safe paths), then install it as a new version of its action.

    The archive's run becomes current when the action is new, when it is newer than the current one, or with
    --make-current; otherwise it is kept as a superseded version. A run already in the library changes nothing.
    """
    from ..pack import unpack as unpack_motion

    result = unpack_motion(_library_at(library), archive, make_current=make_current)
    if json_:
        print_json(asdict(result))
        return
    for note in result.notes:
        err.print(f"note: {escape(note)}")
    err.print(escape(result.message))


@app.command("card")
def card(action: Annotated[str, typer.Argument()],
         write: Annotated[bool, typer.Option(
             "--write", help="Also write it as weights/README.md of the current version, when that version has no "
                             "card of its own (trained before cards); never over a card its provenance hashes.")] = False,
         library: LibraryOpt = None) -> None:
    """Print ACTION's model card (Markdown): what, training clips, base, settings, latest eval, how to use.

    train writes the card into each version it saves (weights/README.md, covered by provenance.json's hashes);
    this renders it afresh, with the latest eval results, for any trained version.
    """
    from ..errors import FlashctlError, MotionNotTrainedError
    from ..files import atomic_write, read_json
    from ..model_card import CARD_PATH, card_for_version

    lib = _library_at(library)
    lib.require(action)
    version = lib.version_dir(action)
    if not (version / "weights" / "config.json").is_file():
        raise MotionNotTrainedError(f"motion '{action}' has no weights yet, so no model card",
                                    hint=f"train it first: flashctl train {action}")
    text = card_for_version(action, lib.manifest(action), version)
    if not write:
        typer.echo(text, nl=False)
        return
    if CARD_PATH in ((read_json(version / "provenance.json") or {}).get("files") or {}):
        raise FlashctlError(f"motion '{action}' run {version.name} has its own card ({version / CARD_PATH}), "
                            "covered by provenance.json's hashes; rewriting it would make animate refuse the motion",
                            hint=f"print the current card instead: flashctl motions card {action}")
    with lib.lock(action):
        path = atomic_write(version / CARD_PATH, text)
    typer.echo(str(path))
    err.print(f"wrote the card beside the weights; it is not in provenance.json's hashes (verify and animate ignore "
              f"it), and the next `flashctl train {action}` writes a hashed one")
