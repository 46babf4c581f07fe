"""The web console's runs list with many runs in the store: time per page, first and deep.

    python3 bench/console.py [--runs 100000] [--repeat 60] [--store sqlite postgresql] [--quick]

Fills a store with N runs (a third failed, each failed one with row errors), serves the real
console (uvicorn in a thread, as the daemon does) on loopback, logs in, and times
`GET /runs` and `GET /api/runs` for page 1 and page 400 (keyset pagination: `before=`), one
keep-alive connection, each request `--repeat` times in turn. The reference, measured in the
same run on the same server: the console's stylesheet (`/static/console.css`), which neither
reads the store nor renders a template. Prints p50 and p95 in milliseconds and the p50 ratio
to the reference. Goal: p95 < 100 ms, page 400 as fast as page 1.

`--quick` (CI): 20,000 runs (page 400 needs as many), 20 repeats, SQLite only. With `postgresql` (as root, or as a
user who may run initdb) a PostgreSQL server is started for the run in a temporary folder.
"""

import argparse
import http.client
import re
import shutil
import statistics
import sys
import tempfile
import time
import urllib.parse
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

PASSWORD = "bench-password"
PAGE = 50


def write_config(root: Path, port: int, password_hash: str, store: tuple[str, str] | None) -> Path:
    (root / "partners.d").mkdir()
    store_keys = f'store = "{store[0]}"\nstore_password_file = "{store[1]}"\n' if store else ""
    (root / "dropd.toml").write_text(
        f'[daemon]\nstate_dir = "state"\ndrop_root = "drop"\n{store_keys}'
        '[sftp]\nlisten = "127.0.0.1:0"\nhost_keys = ["state/key"]\n'
        f'[web]\nlisten = "127.0.0.1:{port}"\n[web.staff.bench]\npassword_hash = "{password_hash}"\n'
    )
    for partner in ("northfield", "eastgate", "westfield"):
        (root / "partners.d" / f"{partner}.toml").write_text(
            f'[partner]\nname = "{partner}"\npassword_hash = "{password_hash}"\n'
            f'[[feed]]\nname = "{partner}-students"\nkind = "contacts"\npath = "/imports"\nprefix = "StudentData"\n'
            '[feed.columns]\ncontact_id = "Student ID"\nfirst_name = "First"\nlast_name = "Last"\nmobile_number = "Cell"\n'
        )
    return root / "dropd.toml"


def fill(store, runs: int) -> None:
    partners = ("northfield", "eastgate", "westfield")
    with store.transaction() as tx:
        for n in range(runs):
            partner = partners[n % 3]
            run_id = tx.runs.start(partner, f"{partner}-students", "contacts", "arrival", f"StudentData_{n}.csv", None)
            failed = n % 3 == 0
            tx.runs.finish(run_id, "failed" if failed else "success", "all-rows-rejected: bench" if failed else None,
                           1000, 0 if failed else 990, 1000 if failed else 10)  # fmt: skip
            if failed:
                tx.runs.add_errors(run_id, [(row, "invalid-phone", "rejected", "bad phone") for row in range(2, 12)])


def serve(config_file: Path):
    from daemon.config.settings import load_config
    from daemon.dropzone.gatekeeper import BanList, LastLogins
    from daemon.dropzone.passwords import Verifier
    from daemon.store import open_store
    from daemon.web.app import build_app
    from daemon.web.auth import StaffAuth
    from daemon.web.server import WebServer
    from daemon.web.views import Console

    config = load_config(config_file)
    store = open_store(config)
    bans = BanList(config.security)
    console = Console(lambda: config, store, LastLogins(), bans, lambda name: 0)
    auth = StaffAuth(lambda: config.web, store, Verifier(), bans)
    server = WebServer(config.web, build_app(console, auth, lambda: False))
    return store, server


def log_in(connection: http.client.HTTPConnection) -> str:
    connection.request("GET", "/login")
    answer = connection.getresponse()
    page = answer.read().decode()
    login_cookie = answer.getheader("set-cookie").split(";")[0]
    csrf = re.search(r'name="csrf" value="([^"]+)"', page).group(1)
    body = urllib.parse.urlencode({"csrf": csrf, "username": "bench", "password": PASSWORD, "next": "/"})
    headers = {"Content-Type": "application/x-www-form-urlencoded", "Cookie": login_cookie}
    connection.request("POST", "/login", body, headers)
    answer = connection.getresponse()
    answer.read()
    cookies = [value for name, value in answer.getheaders() if name.lower() == "set-cookie"]
    return next(c.split(";")[0] for c in cookies if c.startswith("dropd_session="))


def timings(connection, path: str, cookie: str, repeat: int) -> list[float]:
    found = []
    for _ in range(repeat):
        started = time.perf_counter()
        connection.request("GET", path, headers={"Cookie": cookie})
        answer = connection.getresponse()
        body = answer.read()
        found.append((time.perf_counter() - started) * 1000)
        if answer.status != 200 or not body:
            raise SystemExit(f"{path}: answered {answer.status}")
    return found


def bench(store_kind: str, runs: int, repeat: int) -> None:
    from daemon.dropzone.passwords import hash_password
    from tests.helpers import PostgresServer, free_port

    work = Path(tempfile.mkdtemp(prefix="dropd-console-bench-"))
    server_pg = None
    web = store = None
    try:
        store_keys = None
        if store_kind == "postgresql":
            server_pg = PostgresServer()
            store_keys = (server_pg.database(), str(server_pg.password_file))
        port = free_port()
        config_file = write_config(work, port, hash_password(PASSWORD), store_keys)
        store, web = serve(config_file)
        started = time.perf_counter()
        fill(store, runs)
        print(f"{store_kind}: {runs:,} runs written in {time.perf_counter() - started:.1f} s")
        web.start()
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        cookie = log_in(connection)
        deep = runs - 399 * PAGE + 1
        paths = {
            "reference: /static/console.css": "/static/console.css",
            "/runs, page 1": "/runs",
            "/runs, page 400": f"/runs?before={deep}",
            "/api/runs, page 1": "/api/runs",
            "/api/runs, page 400": f"/api/runs?before={deep}",
            "/runs?status=failed, page 1": "/runs?status=failed",
        }
        if runs >= 3 * 400 * PAGE:  # a third of the runs are eastgate's
            paths["/runs?partner=eastgate, page 400"] = f"/runs?partner=eastgate&before={runs - 3 * 399 * PAGE}"
        for path in paths.values():  # warm: the first request of each pays for imports and caches
            timings(connection, path, cookie, 2)
        results = {label: [] for label in paths}
        for _ in range(repeat):  # in turn, so that a noisy moment falls on every path alike
            for label, path in paths.items():
                results[label] += timings(connection, path, cookie, 1)
        reference = statistics.median(results["reference: /static/console.css"])
        print(f"  {'request':<36} {'p50 ms':>8} {'p95 ms':>8} {'p50 / reference':>16}")
        for label, found in results.items():
            p50, p95 = statistics.median(found), statistics.quantiles(found, n=20)[-1]
            print(f"  {label:<36} {p50:8.2f} {p95:8.2f} {p50 / reference:16.1f}")
        connection.close()
    finally:
        if web is not None:
            web.stop()
        if store is not None:
            store.close()
        if server_pg is not None:
            server_pg.stop()
        shutil.rmtree(work, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=60)
    parser.add_argument("--store", nargs="+", choices=["sqlite", "postgresql"], default=["sqlite", "postgresql"])
    parser.add_argument("--quick", action="store_true", help="20,000 runs, 20 repeats, SQLite only (CI)")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.repeat, args.store = 400 * PAGE, 20, ["sqlite"]
    if args.runs < 400 * PAGE:
        args.runs = 400 * PAGE
        print(f"(page 400 needs {args.runs:,} runs: using that many)")
    from daemon.logs import configure_logging

    configure_logging("warning")
    for kind in args.store:
        bench(kind, args.runs, args.repeat)
    return 0


if __name__ == "__main__":
    sys.exit(main())
