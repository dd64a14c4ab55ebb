"""Debian's Chromium for Playwright: no browser is downloaded, the system package is driven.

`make test` installs `chromium-headless-shell` when it is missing; CHROMIUM may name another
binary.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from playwright.sync_api import Browser, Playwright

# The real binaries behind /usr/bin's wrapper scripts (`dpkg -L chromium-headless-shell`).
CANDIDATES = (
    "/usr/lib/chromium/chromium-headless-shell",
    "/usr/lib/chromium/chromium",
)
# Root in a container has no sandbox to use; the rest keep Chromium off the network.
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium_path() -> str | None:
    """The Chromium binary to drive: $CHROMIUM, else the Debian package's."""
    if named := os.environ.get("CHROMIUM"):
        return named
    for candidate in CANDIDATES:
        if Path(candidate).is_file():
            return candidate
    return shutil.which("chromium-headless-shell") or shutil.which("chromium")


def launch(playwright: Playwright) -> Browser:
    """Start the system Chromium, headless."""
    path = chromium_path()
    if path is None:
        raise RuntimeError(
            "No Chromium found: `make test` installs it (apt-get install chromium-headless-shell)."
        )
    return playwright.chromium.launch(executable_path=path, args=LAUNCH_ARGS)
