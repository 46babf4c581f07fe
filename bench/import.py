"""Import speed and memory against a floor measured in the same run.

    python3 bench/import.py [--rows 1000000] [--only contacts subscribers activity] [--store postgresql]

Floor: csv.reader over the file and a plain SQLite executemany upsert of the raw rows, one
transaction. Contacts: (b) dropd's first import (`dropd ingest`), (c) the same file with 1 %
of rows changed. Every step starts after `sync`, so that none pays for the previous one's writes. Subscribers: a full replacement of a list of N by a file with 10 % of them
gone. Activity: N events. Each step runs in its own process; peak RSS is that process's
maximum resident set, with Python's bytecode cached (in the run's temporary folder), as an
installed dropd has it. Each step and floor is timed twice: whole (the process, start-up
included) and after start-up (dropd's `ingest` once its modules are imported, as the running
daemon has them; the floor's work once its modules are imported, as psql's timing times a
copy). Prints both, rows/s, peak RSS, and the ratios to the floor (after start-up first).

With `--store postgresql` (as root, or as a user who may run initdb) a PostgreSQL server is
started for the run in a temporary folder and dropd imports into it; the floor is then the
database's own `COPY` of the same rows, in one transaction, into a table with the same keys as
dropd's (an identity primary key; the unique and plain indexes of dropd's table on the
columns that hold those keys). The same COPY into a table without any key is shown beside it.
"""

import argparse
import csv
import os
import random
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEADER = ["Student ID", "First Name", "Last Name", "Cell", "Email", "CRM", "Text Opt Out", "Major", "Staff", "Year",
          "Preferred Name", "Language"]  # fmt: skip
AREAS = (201, 202, 203, 205, 206, 212, 213, 214, 215, 216, 217, 218, 301, 302, 303, 304, 305, 312, 313, 314)
FIRST = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "John", "Margaret", "Ken")
LAST = ("Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "McCarthy", "Hamilton", "Thompson")
MAJORS = ("Mathematics", "History", "Biology", "Computer Science", "Nursing", "Economics")


def phone(index: int, style: int) -> str:
    area = AREAS[index % len(AREAS)]
    exchange = 234 + (index // len(AREAS)) % 600
    line = (index // (len(AREAS) * 600)) % 10000
    return (
        f"({area}) {exchange}-{line:04d}",
        f"{area}-{exchange}-{line:04d}",
        f"+1 {area} {exchange} {line:04d}",
        f"{area}{exchange}{line:04d}",
    )[style % 4]


def row(index: int, variant: int = 0) -> list[str]:
    first, last = FIRST[index % 10], LAST[(index // 10) % 10]
    return [
        f"{index:08d}", first if not variant else first + "ie", last, phone(index, index), f"{first}.{last}{index}@example.edu".lower(),
        f"CRM{index:09d}", ("N", "Y", "")[index % 3], MAJORS[index % len(MAJORS)], f"ST{index % 250:03d}", str(2026 + index % 4),
        first[:3] if index % 5 == 0 else "", ("en", "es", "FR", "", "pt")[index % 5],
    ]  # fmt: skip


def write_file(path: Path, rows: int, changed: set[int] = frozenset()) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index in range(rows):
            writer.writerow(row(index, 1 if index in changed else 0))


def write_subscribers(path: Path, rows: int, gone: float = 0.0) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["Email", "First Name", "Last Name", "Segment"])
        for index in range(rows):
            if gone and index % round(1 / gone) == 0:
                continue
            first, last = FIRST[index % 10], LAST[(index // 10) % 10]
            writer.writerow([f"{first}.{last}{index}@members.example.org".lower(), first, last, f"SEG{index % 12}"])


def write_activity(path: Path, rows: int) -> None:
    start = time.time() - 3 * 86400
    actions = ("message-sent", "open", "click", "open", "bounce")
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["cID", "_id", "mcID", "message_name", "message_sent", "action", "time", "first"])
        for index in range(rows):
            stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(start + index * 0.2))
            writer.writerow([f"{index % 200000:08d}", f"ev{index:010d}", f"mc{index % 5000}", f"Issue {index % 40}",
                             stamp, actions[index % 5], stamp, ("true", "false")[index % 2]])  # fmt: skip


def floor(file: str, database: str) -> None:
    """The reference: read every row and upsert it raw, no mapping or validation."""
    started = time.perf_counter()
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    with open(file, newline="") as handle:
        reader = csv.reader(handle)
        width = len(next(reader))
        columns = ", ".join(f"c{i} TEXT" for i in range(1, width))
        connection.execute(f"CREATE TABLE IF NOT EXISTS raw (c0 TEXT PRIMARY KEY, {columns})")
        names = ", ".join(f"c{i}" for i in range(width))
        updates = ", ".join(f"c{i} = excluded.c{i}" for i in range(1, width))
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT INTO raw ({names}) VALUES ({', '.join('?' * width)}) ON CONFLICT (c0) DO UPDATE SET {updates}",
            reader,
        )
        connection.execute("COMMIT")
    print(f"WORK {time.perf_counter() - started}")


FLOOR_KEYS = {
    "Student ID": (("Student ID", "CRM", "Cell"), ()),  # contacts: contact_id, crm_id, mobile_number
    "Email": (("Email",), ()),  # subscribers: email
    "cID": (("_id",), ("cID",)),  # events: event_id unique, contact_id indexed
}
"""Per file (by its first column): the columns dropd's table keeps unique indexes on, then
those it keeps plain indexes on, each after the partner as in dropd's indexes."""


def floor_postgresql(file: str, url: str, password_file: str, keyed: str) -> None:
    """The reference on PostgreSQL: COPY the file's rows, one transaction, into a plain table
    (`keyed` "plain") or (`keyed` "keyed") into one with the same keys as dropd's table: an
    identity primary key and, after a partner column, the same unique and plain indexes."""
    import psycopg

    started = time.perf_counter()
    password = Path(password_file).read_text().strip()
    with open(file, newline="") as handle, psycopg.connect(url, password=password) as connection:
        header = next(csv.reader(handle))
        columns = ", ".join(f"c{i} TEXT" for i in range(len(header)))
        table = f"raw_{keyed}"
        connection.execute(f"DROP TABLE IF EXISTS {table}")
        if keyed == "keyed":
            connection.execute(f"CREATE TABLE {table} (id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY, "
                               f"partner TEXT NOT NULL DEFAULT 'bench', {columns})")  # fmt: skip
            unique, plain = FLOOR_KEYS[header[0]]
            for name in unique + plain:
                column = f"c{header.index(name)}"
                kind = "UNIQUE INDEX" if name in unique else "INDEX"
                connection.execute(f"CREATE {kind} ON {table} (partner, {column})")
        else:
            connection.execute(f"CREATE TABLE {table} ({columns})")
        connection.commit()
        names = ", ".join(f"c{i}" for i in range(len(header)))
        with connection.cursor().copy(f"COPY {table} ({names}) FROM STDIN (FORMAT csv)") as copy:
            for block in iter(lambda: handle.read(1 << 20), ""):
                copy.write(block)
    print(f"WORK {time.perf_counter() - started}")


def ingest_step(config: str, feed: str, file: str) -> None:
    """`dropd ingest` in this process, timed once its modules are imported (as the daemon has
    them): what an import costs, without the interpreter's start-up."""
    import importlib

    for module in ("daemon.commands", "daemon.feeds.runs", "daemon.store.postgres", "daemon.store.sqlite", "handlers"):
        importlib.import_module(module)
    from daemon.cli import main as dropd

    started = time.perf_counter()
    status = dropd(["ingest", "-c", config, feed, file])
    print(f"WORK {time.perf_counter() - started}")
    if status:
        sys.exit(status)


CHILD_ENV = dict(os.environ)
"""Every step's environment: Python's bytecode cached, as an installed dropd has it (pip
compiles it at install). With PYTHONDONTWRITEBYTECODE set, as on some machines, each step
compiled dropd's modules again: 0.3 s, a fifth of a 100,000-row re-import."""


def cached_bytecode(folder: Path) -> None:
    """Steps read compiled modules from `folder` (compiled there first, not in the tree)."""
    CHILD_ENV.pop("PYTHONDONTWRITEBYTECODE", None)
    CHILD_ENV["PYTHONPYCACHEPREFIX"] = str(folder)
    root = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "compileall", "-q", str(root / "daemon"), str(root / "handlers")],
                   env=CHILD_ENV, check=True, stdout=subprocess.DEVNULL)  # fmt: skip
    # With a prefix, Python looks for every module's bytecode there, the libraries' too: one
    # untimed import of what a step uses compiles them once.
    modules = "daemon.commands, daemon.feeds.runs, daemon.store.postgres, daemon.store.sqlite, handlers, pycountry"
    subprocess.run([sys.executable, "-c", f"import {modules}"], env=CHILD_ENV, check=True, cwd=root)


def timed_process(command: list[str]) -> tuple[float, float, float]:
    """Run a command; return (seconds, seconds after start-up, peak RSS in MiB): the second is
    what the command printed last as `WORK <seconds>`. The page cache's dirty data is written
    out first (os.sync), so that no step pays for the writes of the step before it."""
    os.sync()
    started = time.perf_counter()
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(command, stdout=output, stderr=subprocess.PIPE, env=CHILD_ENV)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        if os.waitstatus_to_exitcode(status) != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
        process.stderr.close()
        output.seek(0)
        work = [line for line in output.read().decode().splitlines() if line.startswith("WORK ")]
    return elapsed, float(work[-1].split()[1]), usage.ru_maxrss / 1024


def write_config(root: Path, store: tuple[str, str] | None = None) -> Path:
    """The bench's config; `store` is a PostgreSQL (URL, password file), else SQLite."""
    (root / "partners.d").mkdir()
    store_keys = f'store = "{store[0]}"\nstore_password_file = "{store[1]}"\n' if store else ""
    (root / "dropd.toml").write_text(
        f'[daemon]\nstate_dir = "state"\ndrop_root = "drop"\n{store_keys}'
        '[sftp]\nlisten = "127.0.0.1:0"\nhost_keys = ["state/key"]\n'
    )
    columns = dict(zip(("contact_id", "first_name", "last_name", "mobile_number", "email", "crm_id", "staff_id",
                        "preferred_name", "language"),
                       ("Student ID", "First Name", "Last Name", "Cell", "Email", "CRM", "Staff", "Preferred Name",
                        "Language"), strict=True))  # fmt: skip
    text = '[partner]\nname = "bench"\npassword_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"\n'
    text += '[[feed]]\nname = "students"\nkind = "contacts"\npath = "/imports"\nprefix = "StudentData"\n'
    text += "[feed.columns]\n" + "".join(f'{field} = "{column}"\n' for field, column in columns.items())
    text += '[feed.opt_out]\ncolumn = "Text Opt Out"\nopted_in = ["N"]\nopted_out = ["Y"]\n'
    text += '[[feed.custom]]\nfield = "Major"\ncolumn = "Major"\n[[feed.custom]]\nfield = "Year"\ncolumn = "Year"\n'
    text += '[[feed]]\nname = "list"\nkind = "subscribers"\npath = "/lists"\nprefix = "list"\nmode = "full_replace"\n'
    text += '[feed.columns]\nemail = "Email"\nfirst_name = "First Name"\nlast_name = "Last Name"\nsegment_code = "Segment"\n'
    text += '[[feed]]\nname = "events"\nkind = "activity"\npath = "/activity"\nprefix = "activity"\n'
    (root / "partners.d" / "bench.toml").write_text(text)
    return root / "dropd.toml"


def report(label: str, rows: int, seconds: tuple[float, float], rss: float, reference=None) -> None:
    """A step's line: its time after start-up and rows/s by it, its whole time, peak RSS, and
    both ratios to the floor's (after start-up first)."""
    wall, work = seconds
    ratio = f"   {work / reference[1]:5.2f}x floor ({wall / reference[0]:.2f}x whole)" if reference else ""
    print(
        f"  {label:<44} {work:7.2f} s {rows / work:9.0f} rows/s  (whole {wall:6.2f} s)  peak RSS {rss:4.0f} MiB{ratio}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--only", nargs="+", default=["contacts", "subscribers", "activity"],
                        choices=["contacts", "subscribers", "activity"])  # fmt: skip
    parser.add_argument("--store", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--floor", nargs=2, metavar=("FILE", "DB"), help=argparse.SUPPRESS)
    parser.add_argument("--floor-postgresql", nargs=4, metavar=("FILE", "URL", "PASSWORD_FILE", "KIND"),
                        help=argparse.SUPPRESS)  # fmt: skip
    parser.add_argument("--ingest", nargs=3, metavar=("CONFIG", "FEED", "FILE"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.ingest:
        ingest_step(*args.ingest)
        return 0
    if args.floor:
        floor(*args.floor)
        return 0
    if args.floor_postgresql:
        floor_postgresql(*args.floor_postgresql)
        return 0
    work = Path(tempfile.mkdtemp(prefix="dropd-import-bench-"))
    server = None
    try:
        store = None
        if args.store == "postgresql":
            from tests.helpers import PostgresServer

            server = PostgresServer()
            store = (server.database(), str(server.password_file))
        config = write_config(work, store)
        cached_bytecode(work / "pycache")
        # first import, 1 %-changed re-import, replacement, activity: each store's own goals
        targets = (3, 1, 3, "none set") if store else (1.5, 0.5, 1.5, "<= 1.5")
        ingest = [sys.executable, __file__, "--ingest", str(config)]
        # A new server's first COPY also makes its first WAL files and fills its caches: the
        # first floor of a run took up to twice its time (and flattered dropd), so one COPY runs
        # untimed first.
        warmed: list[bool] = []

        def floor_of(path: Path) -> tuple[float, float]:
            if store:
                base = [sys.executable, __file__, "--floor-postgresql", str(path), server.database(), store[1]]
                if not warmed:
                    timed_process([*base, "plain"])
                    warmed.append(True)
                wall, after, rss = timed_process([*base, "plain"])
                report("(COPY into a table without keys)", args.rows, (wall, after), rss)
                command, label = [*base, "keyed"], "floor: COPY into a table with the same keys"
            else:
                command = [sys.executable, __file__, "--floor", str(path), str(work / f"floor-{path.stem}.db")]
                label = "floor: csv.reader + executemany"
            wall, after, rss = timed_process(command)
            report(label, args.rows, (wall, after), rss)
            return wall, after

        def step(label: str, feed: str, path: Path, rows: int, reference: tuple[float, float]) -> float:
            wall, after, rss = timed_process(ingest + [feed, str(path)])
            report(label, rows, (wall, after), rss, reference)
            return after / reference[1]

        if "contacts" in args.only:
            first, second = work / "StudentData_first.csv", work / "StudentData_second.csv"
            write_file(first, args.rows)
            write_file(second, args.rows, set(random.Random(7).sample(range(args.rows), args.rows // 100)))
            print(f"contacts, {args.rows} rows x {len(HEADER)} columns, {first.stat().st_size / 2**20:.0f} MiB")
            reference = floor_of(first)
            b = step("(b) dropd first import", "students", first, args.rows, reference)
            c = step("(c) dropd re-import, 1% changed", "students", second, args.rows, reference)
            print(f"  (b)/floor = {b:.2f} (target <= {targets[0]})   (c)/floor = {c:.2f} (target <= {targets[1]})")
        if "subscribers" in args.only:
            full, smaller = work / "list_full.csv", work / "list_smaller.csv"
            write_subscribers(full, args.rows)
            write_subscribers(smaller, args.rows, gone=0.1)
            print(f"subscribers, full replacement of {args.rows} by a file with 10% gone")
            timed_process(ingest + ["list", str(full)])
            reference = floor_of(smaller)
            ratio = step("dropd full replacement", "list", smaller, args.rows * 9 // 10, reference)
            print(f"  replacement/floor = {ratio:.2f} (target <= {targets[2]})")
        if "activity" in args.only:
            events = work / "activity_events.csv"
            write_activity(events, args.rows)
            print(f"activity, {args.rows} events")
            reference = floor_of(events)
            ratio = step("dropd activity import", "events", events, args.rows, reference)
            print(f"  import/floor = {ratio:.2f} (target: {targets[3]})")
    finally:
        if server is not None:
            server.stop()
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
