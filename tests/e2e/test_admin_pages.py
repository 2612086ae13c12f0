"""The HTML manager's pages over HTTP against a real `smtpsvc serve` (aiohttp as the browser)."""

from __future__ import annotations

import re

import aiohttp
import pytest
from admin_support import OPERATORS, AdminServe
from serve_support import free_port


@pytest.fixture
def engine(admin_serve: AdminServe) -> AdminServe:
    return admin_serve


async def test_changing_the_admin_address_on_the_properties_page_goes_on_at_the_new_address(
        engine: AdminServe) -> None:
    moved = free_port()
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # an IP host
        async with browser.get(f"{engine.url}/login", ssl=False) as response:
            token = re.search(r'name="login_token" value="([^"]+)"', await response.text())
        assert token
        async with browser.post(f"{engine.url}/login", ssl=False, allow_redirects=False,
                                data={"login_token": token[1], "name": "boss", "password": OPERATORS["boss"][0]}
                                ) as response:
            assert response.status == 303
        async with browser.get(f"{engine.url}/properties/Security", ssl=False) as response:
            csrf = re.search(r'name="csrf" value="([^"]+)"', await response.text())
        assert csrf
        async with browser.post(f"{engine.url}/properties/Security", ssl=False, allow_redirects=False,
                                data={"csrf": csrf[1], "admin_listen": f"127.0.0.1:{moved}"}) as response:
            assert response.status == 303
            location = response.headers["Location"]
        assert location == f"https://127.0.0.1:{moved}/properties/Security"
        async with browser.get(location, ssl=False) as response:  # the same session, at the new address
            page = await response.text()
        assert response.status == 200 and "Applied: " in page and f"127.0.0.1:{moved}" in page


@pytest.mark.parametrize(("bound", "tls", "browser_host", "url"), [
    (("127.0.0.2", 8443), True, "127.0.0.1", "https://127.0.0.2:8443"),
    (("0.0.0.0", 8444), True, "mx.example.test", "https://mx.example.test:8444"),
    (("::", 8080), False, "::1", "http://[::1]:8080"),
    (("::1", 8443), True, "localhost", "https://[::1]:8443"),
])
def test_moved_url(bound: tuple[str, int], tls: bool, browser_host: str, url: str) -> None:
    from engine.admin.http_pages import moved_url

    assert moved_url(bound, tls, browser_host) == url


async def test_a_browser_session_needs_its_csrf_token(engine: AdminServe) -> None:
    """The session cookie alone does nothing: the API wants the page's X-CSRF-Token, a form its csrf field, and
    a request from another site is refused whatever it carries."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:  # an IP host
        async with browser.get(f"{engine.url}/login", ssl=False) as response:
            token = re.search(r'name="login_token" value="([^"]+)"', await response.text())
        assert token
        async with browser.post(f"{engine.url}/login", ssl=False, data={"login_token": "forged", "name": "boss",
                                                                         "password": OPERATORS["boss"][0]}) as response:
            assert response.status == 403 and "did not come from this page" in await response.text()
        async with browser.post(f"{engine.url}/login", ssl=False, allow_redirects=False, data={
                "login_token": token[1], "name": "boss", "password": OPERATORS["boss"][0]}) as response:
            assert response.status == 303
        async with browser.get(f"{engine.url}/", ssl=False) as response:
            csrf = re.search(r'<meta name="csrf-token" content="([^"]+)">', await response.text())
        assert csrf

        async def api(headers: dict[str, str]) -> tuple[int, str]:
            async with browser.post(f"{engine.url}/api/v1/server.pause", json={}, headers=headers,
                                    ssl=False) as response:
                return response.status, await response.text()

        status, text = await api({})
        assert status == 403 and "missing or wrong X-CSRF-Token" in text
        status, text = await api({"X-CSRF-Token": "guessed"})
        assert status == 403 and "missing or wrong X-CSRF-Token" in text
        status, text = await api({"X-CSRF-Token": csrf[1], "Origin": "https://evil.example"})
        assert status == 403 and "cross-site request from https://evil.example refused" in text
        async with browser.post(f"{engine.url}/server", data={"csrf": "guessed", "action": "pause"},
                                ssl=False) as response:
            assert response.status == 403 and "missing or wrong CSRF token" in await response.text()
        async with browser.get(f"{engine.url}/", ssl=False) as response:
            assert "data-state>started<" in await response.text()  # nothing of it happened
        async with browser.post(f"{engine.url}/properties/General", ssl=False,
                                data={"csrf": csrf[1], "fqdn": "x" * 300_000}) as response:
            assert response.status == 413  # a form's body is bounded like the API's
        status, text = await api({"X-CSRF-Token": csrf[1]})
        assert status == 200 and '"state":"paused"' in text.replace(" ", "")
