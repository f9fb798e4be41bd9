"""The app's page in a headless Chromium: what its browser test (tests/test_app.py) and ``benchmarks/app.py`` drive.

Needs the system's Chromium and its driver (Debian ``chromium`` + ``chromium-driver``) and selenium (``pip install
'esarm[dev]'``); Selenium Manager never downloads a browser here, the driver's path is given. The browser renders
WebGL in software and resolves no host but 127.0.0.1, so the page is checked (and timed) offline.
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
from pathlib import Path

CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run",
    "--window-size=1400,1500", "--autoplay-policy=no-user-gesture-required",
    # WebGL without a GPU: Chromium's software rasteriser, which it only enables when asked.
    "--use-angle=swiftshader", "--enable-unsafe-swiftshader",
    # Any request that leaves this machine fails: the page must work offline.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
)  # fmt: skip


def chromium_binary() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


def missing_browser_parts() -> str | None:
    """Why the page cannot be driven here (Chromium, chromedriver or selenium missing), or ``None`` when it can."""
    if chromium_binary() is None:
        return "no chromium on PATH (Debian: apt install chromium)"
    if shutil.which("chromedriver") is None:
        return "no chromedriver on PATH (Debian: apt install chromium-driver)"
    if importlib.util.find_spec("selenium") is None:
        return "no selenium (pip install 'esarm[dev]')"
    return None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def headless_chromium(profile: str | Path, log_requests: bool = False):
    """A selenium ``webdriver.Chrome`` over the system's Chromium with :data:`CHROMIUM_FLAGS` and its own profile
    folder; ``log_requests`` keeps the performance and console logs (to check what the page fetched)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    missing = missing_browser_parts()
    if missing is not None:
        raise RuntimeError(f"cannot start the headless browser: {missing}")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium_binary()
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    if log_requests:
        options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    return webdriver.Chrome(options=options, service=Service(shutil.which("chromedriver")))
