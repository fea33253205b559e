"""Make throwaway plugins for tests: a local plugin file, or a pip-installed-looking distribution."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

AUGMENTATION_PLUGIN = '''
from flashctl import hookimpl

CALLS = []


def _factory(options, ctx):
    def tint(video, generator):
        CALLS.append(tuple(video.shape))
        return (video * 0.5).clamp(-1, 1)
    return tint


@hookimpl
def register_augmentations(register):
    register("{name}", _factory, summary="halves every pixel", preserves_motion=True)
'''


def plugin_source(name: str = "tint") -> str:
    return textwrap.dedent(AUGMENTATION_PLUGIN.format(name=name))


def install_distribution(site: Path, module: str, source: str, entry_name: str | None = None,
                         monkeypatch=None) -> None:
    """Write ``module.py`` plus a ``.dist-info`` declaring it under the ``flashctl`` entry-point group,
    then put ``site`` on sys.path: exactly what pip leaves behind for a third-party plugin."""
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{module}.py").write_text(source)
    info = site / f"{module}-0.1.dist-info"  # pip's naming: underscores, one dash
    info.mkdir(exist_ok=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text(f"[flashctl]\n{entry_name or module} = {module}\n")
    if monkeypatch is not None:
        monkeypatch.syspath_prepend(str(site))
        monkeypatch.delitem(sys.modules, module, raising=False)
