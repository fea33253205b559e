"""The errors the synthetic world raises; both are usage errors (exit code 2)."""

from __future__ import annotations

from flashctl.errors import FlashctlError


class UnknownActionError(FlashctlError):
    """An action name the synthetic world does not define."""

    exit_code = 2


class SynthSettingError(FlashctlError):
    """A clip setting out of range: frames, size, fps, clip count or appearance split."""

    exit_code = 2
