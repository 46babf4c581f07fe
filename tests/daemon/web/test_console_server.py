"""The console served by the running daemon: started by `dropd run`, bounded against clients
that hold connections, and used by a real browser (Debian's chromium, driven by Playwright)."""

import os
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from daemon.dropzone.passwords import hash_password
from tests.helpers import CONTACTS_HEADER, free_port, students_feed

STAFF_PASSWORD = "support-staff-password"
CHROMIUM = "/usr/bin/chromium"
SCREENSHOTS = os.environ.get("DROPD_SCREENSHOTS")
"""A folder to keep the browser test's screenshots in (docs/console/ is made this way)."""


@pytest.fixture
def console(dropd):
    port = free_port()
    dropd.settings["web"] = {
        "listen": f"127.0.0.1:{port}",
        "base_url": f"http://127.0.0.1:{port}",
        "staff": {"maria": {"password_hash": hash_password(STAFF_PASSWORD)}},
    }
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    dropd.web = f"http://127.0.0.1:{port}"
    dropd.web_port = port
    return dropd


def connect(port: int) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    return sock


def closed_within(sock: socket.socket, seconds: float) -> float | None:
    """Seconds until the server closed `sock` (reading EOF), or None if it stayed open."""
    started = time.monotonic()
    sock.settimeout(seconds)
    try:
        while sock.recv(4096):
            pass
    except TimeoutError:
        return None
    except ConnectionResetError:
        pass
    return time.monotonic() - started


def test_the_console_starts_with_the_daemon_and_answers_over_http(console):
    listening = console.wait_for("server.listening", protocol="web")[0]
    assert listening["address"] == f"127.0.0.1:{console.web_port}"
    with urllib.request.urlopen(f"{console.web}/login", timeout=10) as answer:
        assert answer.status == 200
        assert answer.headers["X-Frame-Options"] == "DENY"
        assert b'name="csrf"' in answer.read()


def test_a_client_that_never_finishes_its_request_is_cut_at_the_deadline(console):
    half_line, half_body = connect(console.web_port), connect(console.web_port)
    silent = connect(console.web_port)
    half_line.sendall(b"GET /login HTTP/1.1\r\nHost: x\r\n")
    half_body.sendall(b"POST /login HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nusername=")
    for sock in (half_line, half_body, silent):
        took = closed_within(sock, 20)
        assert took is not None and took < 15, "held past the 10 s request deadline"
        sock.close()


def test_connections_past_the_cap_are_closed_and_the_console_serves_again_after_the_deadline(console):
    from daemon.web.server import WEB_CONNECTIONS

    idle = [connect(console.web_port) for _ in range(WEB_CONNECTIONS)]
    try:
        time.sleep(0.5)
        with connect(console.web_port) as extra:
            assert closed_within(extra, 5) is not None, "the connection past the cap is closed at once"
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{console.web}/login", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                time.sleep(0.5)
        else:
            raise AssertionError("the console did not serve again once the idle connections were cut")
    finally:
        for sock in idle:
            sock.close()


def upload_with_errors(console) -> dict:
    """A partly good file, then one whose every row is rejected (a failed run): the failed one."""
    bad = [f"{n},Ann{n},Lee,not-a-phone-{n},a{n}@example.org,C{n},N,Art" for n in range(1, 41)]
    good = [f"{n},Bo{n},Ek,+1202555{n:04d},b{n}@example.org,D{n},N,Art" for n in range(100, 160)]
    console.upload("northfield", "/imports/StudentData_1.csv", "\n".join([CONTACTS_HEADER, *bad, *good]).encode())
    console.wait_for_runs("students")
    console.upload("northfield", "/imports/StudentData_<b>night<i>.csv", "\n".join([CONTACTS_HEADER, *bad]).encode())
    return console.wait_for_runs("students", count=2)[-1]


@pytest.mark.skipif(not Path(CHROMIUM).exists(), reason="Debian's chromium is not installed (apt install chromium)")
def test_a_support_person_follows_a_failed_run_in_a_real_browser(console, tmp_path):
    from playwright.sync_api import sync_playwright

    run = upload_with_errors(console)
    assert run["status"] == "failed" and run["rows_rejected"] == 40
    shots = Path(SCREENSHOTS) if SCREENSHOTS else tmp_path
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        try:
            context = browser.new_context(viewport={"width": 1280, "height": 800}, accept_downloads=True)
            page = context.new_page()
            page.goto(f"{console.web}/")
            assert page.url.startswith(f"{console.web}/login")
            page.fill("input[name=username]", "maria")
            page.fill("input[name=password]", STAFF_PASSWORD)
            page.click("button[type=submit]")
            page.wait_for_url(f"{console.web}/")
            assert "failed" in page.inner_text("table.feeds tbody tr:first-child")
            page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
            page.click(f"a[href='/runs/{run['id']}']")
            page.wait_for_url(f"{console.web}/runs/{run['id']}")
            assert "invalid-phone" in page.inner_text("table.codes")
            assert "StudentData_<b>night<i>.csv" in page.inner_text("dl.facts"), "a file name shows as text"
            page.screenshot(path=str(shots / "run.png"), full_page=True)
            with page.expect_download() as waiting:
                page.click("a.download")
            download = waiting.value
            saved = tmp_path / "errors.csv"
            download.save_as(saved)
            assert saved.read_bytes() == Path(run["error_file"]).read_bytes()
            page.goto(f"{console.web}/runs")
            page.screenshot(path=str(shots / "runs.png"), full_page=True)
            page.goto(f"{console.web}/feeds/students")
            page.screenshot(path=str(shots / "feed.png"), full_page=True)

            page.set_viewport_size({"width": 390, "height": 844})
            page.goto(f"{console.web}/runs")
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], f"the runs list scrolls sideways at phone width: {widths}"
            page.screenshot(path=str(shots / "runs-phone.png"), full_page=True)
            page.goto(f"{console.web}/runs/{run['id']}")
            widths = page.evaluate("[document.documentElement.scrollWidth, document.documentElement.clientWidth]")
            assert widths[0] <= widths[1], f"a run's page scrolls sideways at phone width: {widths}"

            page.click("header .logout button")
            page.wait_for_url(f"{console.web}/login")
            page.goto(f"{console.web}/runs")
            assert page.url.startswith(f"{console.web}/login"), "logged out: the console asks for a login again"
            assert not [m for m in console.find("web.request_failed")]
        finally:
            browser.close()
    console.wait_for("web.logged_out", staff="maria")


def test_behind_a_trusted_proxy_failed_logins_count_against_the_real_client(dropd):
    port = free_port()
    dropd.settings["web"] = {
        "listen": f"127.0.0.1:{port}",
        "trusted_proxies": ["127.0.0.1/32"],
        "staff": {"maria": {"password_hash": hash_password(STAFF_PASSWORD)}},
    }
    dropd.add_feed_partner("northfield", [students_feed()])
    dropd.start()
    opener = urllib.request.build_opener()
    with opener.open(f"http://127.0.0.1:{port}/login", timeout=10) as answer:
        page = answer.read().decode()
        cookie = answer.headers["Set-Cookie"].split(";")[0]
    csrf = page.split('name="csrf" value="', 1)[1].split('"', 1)[0]
    body = urllib.parse.urlencode({"csrf": csrf, "username": "maria", "password": "wrong"}).encode()
    request = urllib.request.Request(f"http://127.0.0.1:{port}/login", body,
                                     {"Cookie": cookie, "X-Forwarded-For": "203.0.113.9"})  # fmt: skip
    try:
        opener.open(request, timeout=10)
    except urllib.error.HTTPError as refused:
        assert refused.code == 403
    [failed] = dropd.wait_for("login.failed", protocol="web")
    assert failed["remote"] == "203.0.113.9" and failed["user"] == "maria" and failed["reason"] == "wrong password"
