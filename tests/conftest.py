"""Every test runs offline, in its own temp folder, with no FLASHCTL_* settings leaking in."""

from __future__ import annotations

import os
import socket

import pytest


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Tiny models gain nothing from 2 threads, and 2 threads on a busy 2-core machine run ~10x slower."""
    import torch

    torch.set_num_threads(1)


@pytest.fixture(scope="session")
def host():
    """The plugin host with every built-in plugin, as installed (built once: registration is pure)."""
    from flashctl.plugins import build_host

    return build_host()


@pytest.fixture(autouse=True)
def _isolated(tmp_path, monkeypatch):
    for key in list(os.environ):
        if key.startswith("FLASHCTL_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("TRANSFORMERS_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / ".hf"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / ".config"))  # no user-level flashctl.toml leaks in
    monkeypatch.chdir(tmp_path)

    def refuse(*args, **kwargs):
        raise OSError("tests must not use the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    yield
