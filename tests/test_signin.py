"""Sign-in: wrong passwords bring a growing pause (per client, with a message), the right password
still works for everyone else, and the login page tells nothing about the app's API."""

from __future__ import annotations

import re

import httpx
import pytest

from app.signin import FREE_TRIES, MAX_PAUSE, SignInLimiter, rewrite_login_page
from tests.browser import chromium
from tests.serving import serving

ATTACKER, NEIGHBOUR = "203.0.113.7", "198.51.100.20"  # documentation addresses (RFC 5737)


class StoppedClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_wrong_tries_bring_a_pause_that_doubles_up_to_a_cap():
    clock = StoppedClock()
    limiter = SignInLimiter(clock=clock)
    assert all(limiter.start(ATTACKER) == 0 for _ in range(FREE_TRIES))  # free (each counted as wrong)
    assert limiter.start(ATTACKER) == pytest.approx(1.0)  # refused: wait a second
    assert limiter.start(NEIGHBOUR) == 0  # others are not affected
    pauses = []
    for _ in range(14):
        clock.now += limiter.wait(ATTACKER)
        assert limiter.start(ATTACKER) == 0
        pauses.append(limiter.wait(ATTACKER))
    assert pauses[:4] == [2.0, 4.0, 8.0, 16.0] and pauses[-1] == MAX_PAUSE == 900.0
    limiter.succeeded(ATTACKER)  # the right password (after the pause) clears the count
    assert limiter.wait(ATTACKER) == 0 and limiter.start(ATTACKER) == 0


def test_the_table_of_clients_is_bounded():
    limiter = SignInLimiter(clock=StoppedClock(), capacity=3)
    for client in ("a", "b", "c", "d"):
        for _ in range(FREE_TRIES):
            limiter.start(client)
    assert limiter.wait("a") == 0  # the least recently seen was forgotten
    assert all(limiter.wait(client) > 0 for client in ("b", "c", "d"))


def _sign_in(url: str, password: str, client: str) -> httpx.Response:
    # The server trusts X-Forwarded-For from this machine (uvicorn's FORWARDED_ALLOW_IPS, as a
    # reverse proxy here would send it), so each test client can have an address of its own.
    data = {"username": "ann", "password": password}
    return httpx.post(f"{url}login", data=data, headers={"x-forwarded-for": client}, timeout=10)


def test_repeated_wrong_passwords_are_paused_and_others_still_sign_in(tiny_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    with serving(tiny_engine, auth="ann:secret") as demo:
        url = demo.local_url
        assert [_sign_in(url, "guess", ATTACKER).status_code for _ in range(FREE_TRIES)] == [400] * FREE_TRIES
        paused = _sign_in(url, "secret", ATTACKER)  # even the right password: it is not checked now
        assert paused.status_code == 429 and int(paused.headers["retry-after"]) >= 1
        assert "Too many wrong sign-ins" in paused.json()["detail"]
        assert _sign_in(url, "secret", NEIGHBOUR).status_code == 200
        page = httpx.get(url, headers={"x-forwarded-for": ATTACKER}, timeout=10).text
        assert "Too many wrong sign-ins" in page  # the browser shows it on the login page


def test_the_login_page_has_no_api_description_until_signed_in(tiny_engine, tmp_path, monkeypatch):
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    with serving(tiny_engine, auth="ann:secret") as demo:
        with httpx.Client(base_url=demo.local_url, timeout=10) as browser:
            for query in ("", "?all_endpoints=true"):
                login_page = browser.get(f"/{query}").text
                assert "window.gradio_api_info = null;" in login_page
                assert "summarize" not in login_page and "/info" not in login_page
            assert browser.post("/login", data={"username": "ann", "password": "secret"}).status_code == 200
            app_page = browser.get("/").text
            assert '"/summarize"' in app_page and "Too many" not in app_page


def test_other_pages_are_left_as_they_are():
    page = '<script>window.gradio_config = {"components":[],"auth_message":"x"};</script>'
    page += '<script>window.gradio_api_info = {"named_endpoints":{}};</script>'
    assert rewrite_login_page(page) is None


@pytest.mark.browser
def test_signing_in_with_a_wrong_then_the_right_password_in_chromium(tiny_engine, tmp_path, monkeypatch):
    from playwright.sync_api import expect

    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path))
    monkeypatch.setattr(SignInLimiter, "pause", lambda self, tries: 60.0)  # long enough to watch
    with serving(tiny_engine, auth="ann:secret") as demo, chromium() as browser:
        page = _login_page(browser, demo.local_url, NEIGHBOUR)
        _submit(page, "guess")
        expect(page.get_by_text("Incorrect Credentials", exact=False)).to_be_visible(timeout=10_000)
        _submit(page, "secret")
        expect(page.locator("#documents")).to_be_visible(timeout=30_000)  # the app itself

        page = _login_page(browser, demo.local_url, ATTACKER)
        for _ in range(FREE_TRIES):  # meanwhile, from the same address, a script guesses
            assert _sign_in(demo.local_url, "guess", ATTACKER).status_code == 400
        _submit(page, "secret")  # 429: the page reloads and says why
        expect(page.get_by_text("Too many wrong sign-ins from your address")).to_be_visible(timeout=10_000)
        expect(page.get_by_text(re.compile(r"wait (59|60) seconds, then try again"))).to_be_visible()


def _login_page(browser, url: str, address: str):
    from playwright.sync_api import expect

    page = browser.new_context(extra_http_headers={"x-forwarded-for": address}).new_page()
    page.goto(url)
    expect(page.get_by_text("sign in with the user name and password")).to_be_visible(timeout=30_000)
    return page


def _submit(page, password: str) -> None:
    page.locator("input[type=text]").fill("ann")
    page.locator("input[type=password]").fill(password)
    page.get_by_role("button", name="Login").click()
