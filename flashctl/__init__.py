"""flashctl: learn a human action from a few videos, animate any still image with it."""

from .hookspecs import hookimpl

__version__ = "0.1.0"
__all__ = ["hookimpl", "__version__"]
