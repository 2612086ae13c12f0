"""The SMTP Service Manager (HTML) in a real browser: headless Chromium, driven by Selenium, against a real
`smtpsvc serve`. Every page is screenshotted (SMTPSVC_SCREENSHOTS=DIR keeps them)."""

from __future__ import annotations

import os
import smtplib
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from admin_support import OPERATORS, AdminServe
from browser_support import chromium, need_chromium
from serve_support import free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def engine(tmp_path: Path) -> Iterator[AdminServe]:
    need_chromium()
    with AdminServe(tmp_path / "a") as process:
        yield process


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    folder = Path(os.environ.get("SMTPSVC_SCREENSHOTS", tmp_path / "shots"))
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def curl(engine: AdminServe, *args: str) -> str:
    user = f"boss:{OPERATORS['boss'][0]}"
    return subprocess.run(["curl", "-sSk", "-u", user, *args], check=True, capture_output=True, text=True,
                          timeout=60).stdout


def ehlo_size(port: int) -> int:
    with smtplib.SMTP("127.0.0.1", port, timeout=10) as client:
        client.ehlo("browser.test")
        return int(client.esmtp_features["size"])


def message(path: Path, to: str, subject: str) -> Path:
    path.write_bytes(f"From: a@example.test\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nbody\r\n".encode())
    return path


def test_manager_in_chromium(engine: AdminServe, tmp_path: Path, shots: Path) -> None:
    from selenium.common.exceptions import (
        NoSuchElementException,
        StaleElementReferenceException,
        TimeoutException,
        WebDriverException,
    )
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.select import Select
    from selenium.webdriver.support.wait import WebDriverWait

    # A queued message for a remote domain whose smart host refuses connections, and one in Drop.
    dead = free_port()
    settings = f'{{"values": {{"smart_host": "[127.0.0.1]", "outbound_port": "{dead}"}}}}'
    curl(engine, "-H", "Content-Type: application/json", "-d", settings, f"{engine.url}/api/v1/config.set_many")
    curl(engine, "-F", f"file=@{message(tmp_path / 'far.eml', 'x@partner.test', 'Far away')}", f"{engine.url}/post")
    curl(engine, "-F", f"file=@{message(tmp_path / 'near.eml', 'bob@example.test', 'Close by')}",
         f"{engine.url}/post")

    with chromium(tmp_path / "profile") as driver:
        d: Any = driver

        def shot(name: str) -> None:
            d.save_screenshot(str(shots / f"{name}.png"))

        def main_text() -> str:
            return str(d.find_element(By.TAG_NAME, "main").text)

        def see(text: str) -> None:
            """Wait until the page (a click may still be loading it) shows ``text``."""
            def shows(_: object) -> bool:
                try:
                    return text in main_text()
                except (StaleElementReferenceException, NoSuchElementException):
                    return False
                except WebDriverException as error:  # chromedriver's own word for a stale node mid-navigation
                    if "does not belong to the document" in str(error):
                        return False
                    raise
            try:
                WebDriverWait(d, 30).until(shows)
            except TimeoutException:
                raise AssertionError(f"the page never showed {text!r}; it shows:\n{main_text()}") from None

        d.get(f"{engine.url}/queue")  # not logged in: the login page
        assert d.current_url.endswith("/login")
        shot("01-login")
        d.find_element(By.ID, "name").send_keys("boss")
        d.find_element(By.ID, "password").send_keys("wrong")
        d.find_element(By.CSS_SELECTOR, "form.login button").click()
        see("wrong operator name or password")
        # By the keyboard alone: the name field has the focus, Tab reaches the password, Enter logs in.
        assert d.switch_to.active_element.get_attribute("id") == "name"
        d.switch_to.active_element.send_keys(Keys.CONTROL, "a")  # the name kept from the failed try, selected
        d.switch_to.active_element.send_keys("boss" + Keys.TAB)
        assert d.switch_to.active_element.get_attribute("id") == "password"
        assert d.find_element(By.ID, "name").get_attribute("value") == "boss"
        d.switch_to.active_element.send_keys(OPERATORS["boss"][0] + Keys.ENTER)
        see("started")
        shot("02-server")
        d.find_element(By.TAG_NAME, "body").send_keys(Keys.TAB)  # the first stop: past the header and menu
        assert d.switch_to.active_element.text == "Skip to content"

        d.get(f"{engine.url}/properties/Messages")
        size = d.find_element(By.ID, "f-max_message_size_kb")
        size.clear()
        size.send_keys("lots")
        d.find_element(By.CSS_SELECTOR, "form.properties button[type=submit]").click()
        see("'lots' is not a whole number")  # the option table's own message
        shot("03-properties-invalid")
        size = d.find_element(By.ID, "f-max_message_size_kb")
        size.clear()
        size.send_keys("1000")
        d.find_element(By.CSS_SELECTOR, "form.properties button[type=submit]").click()
        see("Applied: Max message size")
        shot("04-properties-applied")
        assert ehlo_size(engine.port) == 1000 * 1024

        for page in ("sessions", "badmail", "events"):
            d.get(f"{engine.url}/{page}")
            shot(f"05-{page}")

        # The Event Log page's live table follows the engine's events (the SSE stream): a change made elsewhere
        # shows up. The stream may open after a change, so a change is made again until one is seen (bounded).
        def live_admin_action(_: object) -> bool:
            if "AdminAction" in d.find_element(By.CSS_SELECTOR, "table[data-live-events]").text:
                return True
            curl(engine, "-H", "Content-Type: application/json", "-d", '{"key": "max_recipients", "value": "90"}',
                 f"{engine.url}/api/v1/config.set")
            return False
        WebDriverWait(d, 30, poll_frequency=1.0).until(live_admin_action)
        assert "op=config.set" in d.find_element(By.CSS_SELECTOR, "table[data-live-events]").text
        shot("05-events-live")

        d.get(f"{engine.url}/counters")  # live: the page's script asks the API (session cookie + CSRF header)
        see("refreshed every few seconds")
        WebDriverWait(d, 30).until(lambda _: "refreshed" not in d.find_element(By.ID, "live").text)
        assert d.find_element(By.ID, "live").text.startswith("Updated ")
        shot("05-counters")

        d.get(f"{engine.url}/domains")
        d.find_element(By.ID, "d-name").send_keys("partner2.test")
        d.find_element(By.CSS_SELECTOR, "button[value=add]").click()
        see("Added the domain partner2.test")
        shot("05-domains")
        d.find_element(By.LINK_TEXT, "partner2.test").click()
        see("partner2.test Properties")
        d.find_element(By.ID, "d-smart").send_keys("[192.0.2.25]")
        d.find_element(By.NAME, "tls_required").click()
        d.find_element(By.CSS_SELECTOR, "button[value=update]").click()
        see("Applied the properties of partner2.test")
        shot("05-domain-properties")
        assert d.find_element(By.ID, "d-smart").get_attribute("value") == "[192.0.2.25]"

        d.get(f"{engine.url}/drop")
        see("Close by")
        shot("06-drop")
        d.find_element(By.CSS_SELECTOR, "main table a").click()
        see("Subject: Close by")
        shot("07-drop-item")
        assert d.find_element(By.CSS_SELECTOR, "button[value=resend]").text == "Resend (a copy into Pickup)"
        d.set_window_size(390, 844)
        shot("07-phone-drop-item")
        width, screen = d.execute_script(
            "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
        assert width <= screen, f"the Drop item is {width} px wide on a {screen} px screen"
        d.set_window_size(1280, 900)

        d.get(f"{engine.url}/queue")
        see("x@partner.test")
        shot("08-queue")
        d.find_element(By.CSS_SELECTOR, "table.queue a").click()
        see("SMTP transcript")
        shot("09-message")
        d.find_element(By.CSS_SELECTOR, "button[value=freeze]").click()
        see("1 message(s) frozen")
        assert "frozen" in d.find_element(By.CSS_SELECTOR, "table.queue td.state").text
        d.get(f"{engine.url}/queue?q=partner&state=frozen")
        see("1 matching")

        d.get(f"{engine.url}/upload")
        d.find_element(By.ID, "files").send_keys(str(message(tmp_path / "up.eml", "carol@example.test", "Uploaded")))
        d.find_element(By.CSS_SELECTOR, "form.properties button[type=submit]").click()
        see("accepted, queue ID")
        shot("10-upload")

        # A form whose CSRF token was taken out is refused, and nothing happens.
        d.get(f"{engine.url}/")
        d.execute_script("document.querySelectorAll('input[name=csrf]').forEach(e => e.remove())")
        d.find_element(By.CSS_SELECTOR, "button[value=pause]").click()
        see("CSRF token")
        shot("11-csrf-refused")
        d.get(f"{engine.url}/")
        see("started")

        d.get(f"{engine.url}/operators")
        d.find_element(By.ID, "o-name").send_keys("dave")
        Select(d.find_element(By.ID, "o-role")).select_by_visible_text("viewer")
        d.find_element(By.ID, "o-pw").send_keys("dave-password")
        d.find_element(By.ID, "o-pw2").send_keys("dave-password")
        d.find_element(By.CSS_SELECTOR, "button[value=add]").click()
        see("Added the operator dave")
        d.find_element(By.ID, "o-name").send_keys("mia")
        Select(d.find_element(By.ID, "o-role")).select_by_visible_text("poster")
        d.find_element(By.ID, "o-pw").send_keys("mia-password")
        d.find_element(By.ID, "o-pw2").send_keys("mia-password")
        d.find_element(By.CSS_SELECTOR, "button[value=add]").click()
        see("Added the operator mia")
        shot("12-operators")

        # A viewer sees everything and can change nothing: no action buttons, read-only fields.
        d.find_element(By.CSS_SELECTOR, "form.logout button").click()
        see("Operator")
        d.find_element(By.ID, "name").send_keys("watcher")
        d.find_element(By.ID, "password").send_keys(OPERATORS["watcher"][0])
        d.find_element(By.CSS_SELECTOR, "form.login button").click()
        see("started")
        assert "watcher (viewer)" in d.find_element(By.CSS_SELECTOR, "header .who").text
        d.get(f"{engine.url}/queue")
        see("x@partner.test")
        assert not d.find_elements(By.CSS_SELECTOR, "button[value=delete]")
        d.get(f"{engine.url}/properties/Messages")
        assert d.find_element(By.ID, "f-max_message_size_kb").get_attribute("readonly") is not None
        shot("13-viewer-properties")

        d.set_window_size(390, 844)  # a phone
        d.get(f"{engine.url}/queue")
        shot("14-phone-queue")
        d.get(f"{engine.url}/properties/Access")
        shot("15-phone-properties")
        # On a phone no page is wider than the screen (wide tables scroll inside their own box).
        for page in ("", "queue", "properties/Access", "domains", "sessions", "drop", "badmail", "counters",
                     "events", "upload", "operators"):
            d.get(f"{engine.url}/{page}")
            width, screen = d.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert width <= screen, f"/{page} is {width} px wide on a {screen} px screen"
        for listing in ("queue", "drop"):  # an item's page too (long IDs and file names)
            d.get(f"{engine.url}/{listing}")
            d.get(d.find_element(By.CSS_SELECTOR, "main table a").get_attribute("href"))
            width, screen = d.execute_script(
                "return [document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert width <= screen, f"{d.current_url} is {width} px wide on a {screen} px screen"

        # A poster lands on the upload page, sees no other section, and gets an answer per file; with the
        # server stopped, an upload waits in Pickup.
        d.set_window_size(1280, 900)
        d.find_element(By.CSS_SELECTOR, "form.logout button").click()
        see("Operator")
        d.find_element(By.ID, "name").send_keys("mia")
        d.find_element(By.ID, "password").send_keys("mia-password")
        d.find_element(By.CSS_SELECTOR, "form.login button").click()
        see("Message files")
        assert d.current_url.endswith("/upload")
        assert [a.text for a in d.find_elements(By.CSS_SELECTOR, "nav a")] == ["Post messages"]
        curl(engine, "-H", "Content-Type: application/json", "-d", "{}", f"{engine.url}/api/v1/server.stop")
        (tmp_path / "notes.txt").write_bytes(b"no headers here\r\n")
        files = [message(tmp_path / "later.eml", "carol@example.test", "Later"), tmp_path / "notes.txt"]
        d.find_element(By.ID, "files").send_keys("\n".join(str(f) for f in files))
        d.find_element(By.CSS_SELECTOR, "form.properties button[type=submit]").click()
        see("accepted into Pickup")
        assert "refused: not a message" in main_text()
        shot("16-poster-upload")
        d.get(f"{engine.url}/queue")
        assert "may only post messages" in main_text()
        curl(engine, "-H", "Content-Type: application/json", "-d", "{}", f"{engine.url}/api/v1/server.start")
