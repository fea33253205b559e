"""Load a repository script (experiments/, bench/) as a module for a test."""

import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

REPO = Path(__file__).parents[1]


@contextmanager
def loaded_script(relative: str) -> Iterator[object]:
    """The script at ``REPO / relative`` as a module, registered in ``sys.modules`` while in use
    (dataclasses look their module up while a class is built)."""
    name = "script_" + relative.replace("/", "_").removesuffix(".py")
    spec = importlib.util.spec_from_file_location(name, REPO / relative)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        del sys.modules[name]
