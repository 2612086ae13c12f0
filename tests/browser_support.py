"""Headless Chromium for browser tests: the Debian packages' browser and driver, nothing downloaded."""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CHROMEDRIVER = Path("/usr/bin/chromedriver")
CHROMIUM = Path("/usr/bin/chromium")


def need_chromium() -> None:
    if not (CHROMEDRIVER.exists() and CHROMIUM.exists()):
        pytest.skip("Debian's chromium and chromium-driver are not installed (tests/run installs them)")


@contextmanager
def chromium(profile: Path, *, width: int = 1280, height: int = 900) -> Iterator[object]:
    """A headless Chromium driven by /usr/bin/chromedriver (Selenium Manager never runs: the driver path is
    given), with a fresh profile; it accepts the test server's self-signed certificate."""
    need_chromium()
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # belt and braces: Selenium Manager may not go online
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                     "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                     f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(argument)
    options.accept_insecure_certs = True
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)
