"""The web console in-process (Starlette's test client over the real app, store and config):
every route, its JSON twin, and each security rule of the console."""

import datetime
import json
import re
import subprocess

import pytest
from starlette.testclient import TestClient

from daemon.clock import utc_now
from daemon.dropzone.gatekeeper import BanList, LastLogins
from daemon.dropzone.passwords import Verifier, hash_password
from daemon.web.app import SESSION_COOKIE, build_app
from daemon.web.auth import StaffAuth
from daemon.web.views import Console
from tests.helpers import CONTACTS_HEADER, InProcessFeeds, conversations_feed, students_feed

MARIA, OMAR = "maria-password-1", "omar-password-2"
HOSTILE = '<img src=x onerror="alert(1)">'
PAGES = ["/", "/runs", "/partners", "/partners/northfield", "/feeds/students"]


def contacts(*rows: str) -> bytes:
    return ("\n".join([CONTACTS_HEADER, *rows]) + "\n").encode()


class Clock:
    def __init__(self):
        self.now = utc_now()

    def __call__(self):
        return self.now


@pytest.fixture(scope="module")
def hashes():
    return {"maria": hash_password(MARIA), "omar": hash_password(OMAR)}


@pytest.fixture
def console(tmp_path, password_hash, hashes):
    feeds = InProcessFeeds(tmp_path, password_hash)
    feeds.settings["web"] = {
        "listen": "127.0.0.1:0",
        "base_url": "https://dropd.example.org",
        "session_lifetime": "1h",
        "staff": {"maria": {"password_hash": hashes["maria"]}, "omar": {"password_hash": hashes["omar"],
                                                                        "partners": ["eastgate"]}},
    }  # fmt: skip
    feeds.add_feed_partner("northfield", [students_feed(description=f"Students {HOSTILE}")])
    feeds.add_feed_partner("eastgate", [students_feed(name="alumni", path="/alumni", prefix="Alumni")])
    feeds.start()
    feeds.clock = Clock()
    feeds.bans = BanList(feeds.config.security)
    view = Console(lambda: feeds.config, feeds.store, LastLogins(), feeds.bans, lambda name: 1234, feeds.clock)
    auth = StaffAuth(lambda: feeds.config.web, feeds.store, Verifier(), feeds.bans, feeds.clock)
    feeds.app = build_app(view, auth, lambda: feeds.config.web.secure_cookies)
    yield feeds
    feeds.stop()


def browser(console) -> TestClient:
    return TestClient(console.app, base_url="https://testserver", follow_redirects=False)


def log_in(client: TestClient, user="maria", password=MARIA, next_page="/"):
    form = client.get("/login", params={"next": next_page})
    csrf = re.search(r'name="csrf" value="([^"]+)"', form.text).group(1)
    return client.post("/login", data={"csrf": csrf, "username": user, "password": password, "next": next_page})


def logged_in(console, user="maria", password=MARIA) -> TestClient:
    client = browser(console)
    assert log_in(client, user, password).status_code == 303
    return client


def test_login_sets_a_strict_http_only_secure_session_cookie_and_leads_to_the_dashboard(console):
    client = browser(console)
    assert client.get("/").headers["location"] == "/login?next=%2F"
    answer = log_in(client)
    assert answer.status_code == 303 and answer.headers["location"] == "/"
    cookie = next(v for k, v in answer.headers.multi_items() if k == "set-cookie" and v.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Secure" in cookie and "Max-Age=3600" in cookie
    page = client.get("/")
    assert page.status_code == 200 and "students" in page.text and "alumni" in page.text


def test_wrong_password_and_unknown_user_get_the_same_answer(console):
    client = browser(console)
    wrong, unknown = log_in(client, "maria", "nope"), log_in(client, "nobody", "nope")
    assert wrong.status_code == unknown.status_code == 403
    strip = lambda text: re.sub(r'value="[^"]+"', "", text)  # noqa: E731 (the fresh CSRF token differs)
    assert strip(wrong.text) == strip(unknown.text)
    assert "Wrong user name or password" in wrong.text


def test_failed_console_logins_ban_the_address_as_drop_zone_logins_do(console):
    client = browser(console)
    for _ in range(console.config.security.max_failures):
        assert log_in(client, "maria", "guess").status_code == 403
    assert console.bans.is_banned("testclient")
    assert log_in(client).status_code == 403, "a banned address cannot log in even with the right password"


def test_login_without_its_csrf_token_is_refused(console):
    client = browser(console)
    client.get("/login")
    answer = client.post("/login", data={"csrf": "forged", "username": "maria", "password": MARIA})
    assert answer.status_code == 403 and SESSION_COOKIE not in answer.headers.get("set-cookie", "")


def test_login_never_redirects_to_another_site(console):
    client = browser(console)
    assert log_in(client, next_page="//evil.example/x").headers["location"] == "/"


def test_every_method_but_get_and_head_is_refused_outside_login_and_logout(console):
    client = logged_in(console)
    for method in ("POST", "PUT", "PATCH", "DELETE", "OPTIONS"):
        for path in ("/", "/runs", "/api/runs", "/partners/northfield", "/static/console.css"):
            answer = client.request(method, path)
            assert answer.status_code == 405, (method, path)
            assert answer.headers["allow"] == "GET, HEAD"
    assert client.head("/runs").status_code == 200


def test_every_answer_carries_the_security_headers(console):
    client = logged_in(console)
    for path in [*PAGES, "/api/runs", "/login", "/nowhere", "/static/console.css"]:
        headers = client.get(path).headers
        assert headers["content-security-policy"].startswith("default-src 'self'"), path
        assert headers["x-content-type-options"] == "nosniff"
        assert headers["referrer-policy"] == "no-referrer"
        assert headers["x-frame-options"] == "DENY"
    assert "<script" not in client.get("/").text


def test_a_request_body_over_the_limit_is_refused(console):
    client = browser(console)
    answer = client.post("/login", content=b"username=" + b"x" * 100_000,
                         headers={"content-type": "application/x-www-form-urlencoded"})  # fmt: skip
    assert answer.status_code == 413


def test_logout_ends_the_session_in_the_store(console):
    client = logged_in(console)
    session = client.cookies[SESSION_COOKIE]
    page = client.get("/")
    csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
    assert client.post("/logout", data={"csrf": "wrong"}).status_code == 403
    assert client.post("/logout", data={"csrf": csrf}).headers["location"] == "/login"
    replay = browser(console)
    replay.cookies.set(SESSION_COOKIE, session)
    assert replay.get("/").status_code == 303, "the old cookie no longer opens a page"
    assert replay.get("/api/runs").status_code == 401


def test_a_session_expires_and_a_changed_password_ends_it(console, hashes):
    client = logged_in(console)
    console.clock.now += datetime.timedelta(minutes=59)
    assert client.get("/").status_code == 200
    console.clock.now += datetime.timedelta(minutes=2)
    assert client.get("/").status_code == 303
    client = logged_in(console)
    web = console.config.web
    staff = {**web.staff, "maria": type(web.staff["maria"])("maria", hash_password("new"), ())}
    console.config = type(console.config)(**{**console.config.__dict__, "web": type(web)(**{**web.__dict__,
                                                                                          "staff": staff})})  # fmt: skip
    assert client.get("/").status_code == 303


def test_partner_controlled_text_is_escaped_in_pages_and_kept_as_data_in_json(console):
    name = f"StudentData{HOSTILE}.csv"
    console.upload("northfield", f"/imports/{name}", contacts(f"1,Ann,Lee,{HOSTILE},a@example.org,C1,N,{HOSTILE}"))
    run_id = console.runs("--feed", "students")[0]["id"]
    client = logged_in(console)
    for path in [*PAGES, f"/runs/{run_id}", "/runs?feed=students"]:
        text = client.get(path).text
        assert "<img" not in text, path
    page = client.get(f"/runs/{run_id}").text
    assert "&lt;img src=x onerror=&#34;alert(1)&#34;&gt;" in page
    data = client.get(f"/api/runs/{run_id}").json()
    assert data["run"]["file"] == name
    assert data["error_rows"][0]["code"] == "invalid-phone" and HOSTILE in data["error_rows"][0]["message"]
    assert {"column": "Cell", "value": HOSTILE} in data["error_rows"][0]["cells"]


def test_a_run_page_shows_codes_first_rows_the_recap_and_its_exact_error_file(console):
    rows = [f"{n},Ann,Lee,bad-{n},a{n}@example.org,C{n},N,Art" for n in range(1, 131)]
    console.upload("northfield", "/imports/StudentData_1.csv", contacts(*rows, "999,Bo,Ek,+12025550100,,C9,N,Art"))
    run = console.runs("--feed", "students")[0]
    client = logged_in(console)
    data = client.get(f"/api/runs/{run['id']}").json()
    assert data["error_codes"] == [{"code": "invalid-phone", "rows": 130, "first_rows": [2, 3, 4, 5, 6]}]
    assert len(data["error_rows"]) == 100 and data["error_rows"][0]["row"] == 2
    assert data["run"]["rows_applied"] == 1 and data["run"]["rows_rejected"] == 130
    page = client.get(f"/runs/{run['id']}").text
    assert "(the first 100)" in page and "Download errors.csv" in page
    download = client.get(f"/runs/{run['id']}/errors.csv")
    assert download.status_code == 200 and download.headers["content-type"].startswith("text/csv")
    with open(run["error_file"], "rb") as handle:
        assert download.content == handle.read()


def test_staff_limited_to_a_partner_see_nothing_of_another(console):
    console.upload("northfield", "/imports/StudentData_1.csv", contacts("1,Ann,Lee,bad,a@example.org,C1,N,Art"))
    console.upload("eastgate", "/alumni/Alumni_1.csv", contacts("2,Bo,Ek,bad,b@example.org,C2,N,Art"))
    northfield = console.runs("--feed", "students")[0]["id"]
    eastgate = console.runs("--feed", "alumni")[0]["id"]
    client = logged_in(console, "omar", OMAR)
    for path in (
        f"/runs/{northfield}",
        f"/api/runs/{northfield}",
        f"/runs/{northfield}/errors.csv",
        "/partners/northfield",
        "/api/partners/northfield",
        "/feeds/students",
        "/api/feeds/students",
    ):
        assert client.get(path).status_code == 404, path  # fmt: skip
    assert client.get(f"/runs/{eastgate}").status_code == 200
    assert [run["feed"] for run in client.get("/api/runs").json()["runs"]] == ["alumni"]
    assert client.get("/api/runs", params={"partner": "northfield"}).json()["runs"] == []
    assert client.get("/api/runs", params={"feed": "students"}).json()["runs"] == []
    assert [p["name"] for p in client.get("/api/partners").json()["partners"]] == ["eastgate"]
    assert [f["feed"] for f in client.get("/api/").json()["feeds"]] == ["alumni"]
    assert "northfield" not in client.get("/").text and "students" not in client.get("/runs").text


def _many_runs(console, count: int) -> None:
    with console.store.transaction() as tx:
        for n in range(count):
            run_id = tx.runs.start("northfield", "students", "contacts", "arrival", f"StudentData_{n}.csv", None)
            tx.runs.finish(run_id, "failed" if n % 3 == 0 else "success", rows_in_file=n, rows_applied=n,
                           rows_rejected=0)  # fmt: skip


def test_runs_page_by_page_newest_first_with_filters(console):
    _many_runs(console, 130)
    client = logged_in(console)
    first = client.get("/api/runs").json()
    assert len(first["runs"]) == 50 and first["runs"][0]["id"] == 130
    second = client.get("/api/runs", params=first["next"]).json()
    assert [run["id"] for run in second["runs"]] == list(range(80, 30, -1))
    third = client.get("/api/runs", params=second["next"]).json()
    assert len(third["runs"]) == 30 and third["next"] is None
    failed = client.get("/api/runs", params={"status": "failed", "limit": "200"}).json()["runs"]
    assert len(failed) == 44 and all(run["status"] == "failed" for run in failed)
    assert "Older runs" in client.get("/runs").text
    for bad in ({"limit": "201"}, {"status": "weird"}, {"since": "yesterday"}, {"before": "-1"}):
        answer = client.get("/api/runs", params=bad)
        assert answer.status_code == 400, bad
    assert len(client.get("/api/runs", params={"since": "2000-01-01", "until": "2100-01-01"}).json()["runs"]) == 50
    assert client.get("/api/runs", params={"until": "2000-01-01"}).json()["runs"] == []


def test_partner_and_feed_pages(console):
    _many_runs(console, 35)
    client = logged_in(console)
    partner = client.get("/api/partners/northfield").json()
    assert partner["partner"]["used"] == 1234 and partner["partner"]["password"] is True
    assert partner["feeds"][0]["name"] == "students" and partner["feeds"][0]["next_run"] is None
    feed = client.get("/api/feeds/students").json()
    assert len(feed["chart"]) == 30 and feed["chart"][-1]["id"] == 35
    assert feed["settings"]["path"] == "/imports"
    page = client.get("/feeds/students").text
    assert '<svg class="chart"' in page and page.count('class="applied"') == 30
    assert client.get("/feeds/nothing").status_code == 404
    assert json.dumps(feed)


def test_secrets_are_never_shown_in_a_feed_page(console, tmp_path):
    secret = tmp_path / "push.pass"
    secret.write_text("hunter2-secret\n")
    key = tmp_path / "push_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "hunter2-secret", "-f", str(key)], check=True)
    destination = {"protocol": "sftp", "host": "127.0.0.1", "port": 22, "username": "u", "private_key_file": str(key),
                   "passphrase_file": str(secret), "host_key": "SHA256:" + "A" * 43}  # fmt: skip
    console.add_feed_partner("westfield", [conversations_feed(destination=destination)])
    console.start()
    client = logged_in(console)
    text = client.get("/api/feeds/conversations").text + client.get("/feeds/conversations").text
    assert "hunter2" not in text and str(secret) not in text and str(key) not in text
    shown = client.get("/api/feeds/conversations").json()["settings"]["destination"]
    assert shown["passphrase_file"] == shown["private_key_file"] == "(set)" and shown["host"] == "127.0.0.1"
    assert client.get("/api/partners/westfield").json()["feeds"][0]["next_run"]


def test_a_partners_page_shows_its_recent_logins_and_the_bans_of_their_addresses(console):
    logins = LastLogins()
    logins.record("northfield", "sftp", "192.0.2.7")
    logins.record_failure("northfield", "ftp", "198.51.100.9", "wrong password")
    for _ in range(console.config.security.max_failures):
        console.bans.record_failure("198.51.100.9")
    view = Console(lambda: console.config, console.store, logins, console.bans, lambda name: 0, console.clock)
    auth = StaffAuth(lambda: console.config.web, console.store, Verifier(), console.bans, console.clock)
    client = TestClient(build_app(view, auth, lambda: True), base_url="https://testserver", follow_redirects=False)
    assert log_in(client).status_code == 303
    data = client.get("/api/partners/northfield").json()
    assert [(entry["address"], entry["outcome"]) for entry in data["logins"]] == [
        ("198.51.100.9", "failed"), ("192.0.2.7", "succeeded")]  # fmt: skip
    assert [ban["address"] for ban in data["bans"]] == ["198.51.100.9"]
    page = client.get("/partners/northfield")
    assert page.status_code == 200 and "198.51.100.9 until " in page.text and "wrong password" in page.text


def test_a_malformed_or_overfull_login_form_is_refused_as_a_bad_request(console):
    client = browser(console)
    client.get("/login")
    fields = client.post("/login", data={f"f{n}": "x" for n in range(20)})
    garbage = client.post(
        "/login", content=b"--x\r\nnot a part", headers={"content-type": "multipart/form-data; boundary=x"}
    )
    assert fields.status_code == garbage.status_code == 400
    assert not console.bans.is_banned("testclient")
