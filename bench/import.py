"""Contacts import speed and memory against a floor measured in the same run.

    python3 bench/import.py [--rows 1000000]

(a) floor: csv.reader over the file and a plain SQLite executemany upsert of the raw rows,
one transaction; (b) dropd's first import of the file (`dropd ingest`); (c) dropd's import of
the same file with 1 % of the rows changed. Each runs in its own process; peak RSS is that
process's maximum resident set. Prints seconds, rows/s, peak RSS and (b)/(a), (c)/(a).
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

HEADER = ["Student ID", "First Name", "Last Name", "Cell", "Email", "CRM", "Text Opt Out", "Major", "Staff", "Year"]
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
    ]  # fmt: skip


def write_file(path: Path, rows: int, changed: set[int] = frozenset()) -> None:
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(HEADER)
        for index in range(rows):
            writer.writerow(row(index, 1 if index in changed else 0))


def floor(file: str, database: str) -> None:
    """The reference: read every row and upsert it raw, no mapping or validation."""
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    columns = ", ".join(f"c{i} TEXT" for i in range(1, 10))
    connection.execute(f"CREATE TABLE IF NOT EXISTS raw (c0 TEXT PRIMARY KEY, {columns})")
    names = ", ".join(f"c{i}" for i in range(10))
    updates = ", ".join(f"c{i} = excluded.c{i}" for i in range(1, 10))
    with open(file, newline="") as handle:
        reader = csv.reader(handle)
        next(reader)
        connection.execute("BEGIN")
        connection.executemany(
            f"INSERT INTO raw ({names}) VALUES ({', '.join('?' * 10)}) ON CONFLICT (c0) DO UPDATE SET {updates}", reader
        )
        connection.execute("COMMIT")


def timed_process(command: list[str]) -> tuple[float, float]:
    """Run a command; return (seconds, peak RSS in MiB)."""
    started = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)
    elapsed = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(command)} failed: {process.stderr.read().decode()[-2000:]}")
    process.stderr.close()
    return elapsed, usage.ru_maxrss / 1024


def write_config(root: Path) -> Path:
    (root / "partners.d").mkdir()
    (root / "dropd.toml").write_text('[daemon]\nstate_dir = "state"\ndrop_root = "drop"\n[sftp]\nlisten = "127.0.0.1:0"\nhost_keys = ["state/key"]\n')
    columns = dict(zip(("contact_id", "first_name", "last_name", "mobile_number", "email", "crm_id", "staff_id"),
                       ("Student ID", "First Name", "Last Name", "Cell", "Email", "CRM", "Staff")))  # fmt: skip
    text = '[partner]\nname = "bench"\npassword_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"\n'
    text += '[[feed]]\nname = "students"\nkind = "contacts"\npath = "/imports"\nprefix = "StudentData"\n'
    text += "[feed.columns]\n" + "".join(f'{field} = "{column}"\n' for field, column in columns.items())
    text += '[feed.opt_out]\ncolumn = "Text Opt Out"\nopted_in = ["N"]\nopted_out = ["Y"]\n'
    text += '[[feed.custom]]\nfield = "Major"\ncolumn = "Major"\n[[feed.custom]]\nfield = "Year"\ncolumn = "Year"\n'
    (root / "partners.d" / "bench.toml").write_text(text)
    return root / "dropd.toml"


def report(label: str, rows: int, seconds: float, rss: float, reference: float | None = None) -> None:
    ratio = f"   {seconds / reference:5.2f}x floor" if reference else ""
    print(f"  {label:<36} {seconds:8.2f} s {rows / seconds:10.0f} rows/s   peak RSS {rss:6.0f} MiB{ratio}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--floor", nargs=2, metavar=("FILE", "DB"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.floor:
        floor(*args.floor)
        return 0
    work = Path(tempfile.mkdtemp(prefix="dropd-import-bench-"))
    try:
        first = work / "StudentData_first.csv"
        second = work / "StudentData_second.csv"
        write_file(first, args.rows)
        changed = set(random.Random(7).sample(range(args.rows), args.rows // 100))
        write_file(second, args.rows, changed)
        config = write_config(work)
        print(f"contacts import, {args.rows} rows x {len(HEADER)} columns, {first.stat().st_size / 2**20:.0f} MiB")
        floor_seconds, floor_rss = timed_process([sys.executable, __file__, "--floor", str(first), str(work / "floor.db")])
        report("(a) floor: csv.reader + executemany", args.rows, floor_seconds, floor_rss)
        dropd = [sys.executable, "-m", "daemon.cli", "ingest", "students", "-c", str(config)]
        seconds, rss = timed_process(dropd + [str(first)])
        report("(b) dropd first import", args.rows, seconds, rss, floor_seconds)
        seconds_again, rss_again = timed_process(dropd + [str(second)])
        report("(c) dropd re-import, 1% changed", args.rows, seconds_again, rss_again, floor_seconds)
        print(f"(b)/(a) = {seconds / floor_seconds:.2f} (target <= 1.5)   (c)/(a) = {seconds_again / floor_seconds:.2f} (target <= 0.5)")
        print(f"peak RSS: {max(rss, rss_again):.0f} MiB (target <= 150)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.exit(main())
