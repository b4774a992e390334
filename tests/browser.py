"""The Chromium that browser tests drive: found where people keep one, installed when it is not.

Looked for in this order: the executable named by ``$CHARRNN_CHROMIUM``; ``chromium``,
``chromium-browser``, ``google-chrome`` or ``google-chrome-stable`` on PATH (Debian's package,
Homebrew's, Google's); the browser Playwright installed for itself. When none is there, the
tests run Playwright's own installer once (a download, so it needs the internet); when that fails
too, every browser test fails with one line saying what to install. Nothing here is skipped: a
machine that cannot run a browser cannot pass the suite.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

ENV = "CHARRNN_CHROMIUM"
ON_PATH = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
HOW_TO_INSTALL = (
    "no Chromium for the browser tests: install one (Debian/Ubuntu: apt-get install chromium; "
    "anywhere with internet: python -m playwright install chromium) or set CHARRNN_CHROMIUM to its path"
)
# This machine's network may be closed: without these Chromium keeps trying to reach Google.
OFFLINE_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
    "--disable-sync",
    "--disable-quic",
]


class NoBrowser(Exception):
    """No Chromium could be found or installed; the message says what to do."""


def installed_chromium(playwright) -> Path | None:
    """A Chromium already on this machine (see the module docstring), or None."""
    named = os.environ.get(ENV)
    if named:
        if not Path(named).is_file():
            raise NoBrowser(f"{ENV}={named} is not a file: point it at a Chromium executable")
        return Path(named)
    for name in ON_PATH:
        found = shutil.which(name)
        if found:
            return Path(found)
    own = Path(playwright.chromium.executable_path)
    return own if own.is_file() else None


def chromium(playwright) -> Path:
    """A Chromium to launch: one already installed, else Playwright's, installed now."""
    found = installed_chromium(playwright)
    if found is not None:
        return found
    install = [sys.executable, "-m", "playwright", "install", "chromium"]
    try:
        done = subprocess.run(install, capture_output=True, text=True, timeout=900)
    except subprocess.TimeoutExpired as exc:
        raise NoBrowser(f"{HOW_TO_INSTALL} (Playwright's installer ran past 15 minutes)") from exc
    found = installed_chromium(playwright)
    if done.returncode != 0 or found is None:
        raise NoBrowser(f"{HOW_TO_INSTALL} (Playwright's installer could not download its browser)")
    return found


@contextlib.contextmanager
def offline_chromium() -> Iterator:
    """A headless Chromium (Playwright's Browser) that reaches for no network; the test fails with
    one line saying what to install when there is none."""
    import pytest
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        try:
            executable = chromium(playwright)
        except NoBrowser as exc:
            pytest.fail(str(exc), pytrace=False)
        browser = playwright.chromium.launch(executable_path=executable, args=OFFLINE_ARGS)
        try:
            yield browser
        finally:
            browser.close()
