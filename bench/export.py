"""Export speed and memory against a floor measured in the same run.

    python3 bench/export.py [--rows 1000000] [--repeat 3]

A store holds N messages (for 1,000 contacts). Floor: the same rows read from the store with
one plain SQLite query and written with a plain `csv.writer`. dropd: a conversations export
of the same rows to the partner's outbox (`run_export`: the snapshot, the spreadsheet-safe
CSV, the copy into the outbox, the run record and the watermark). Each measurement runs in
its own process (peak RSS is that process's maximum resident set); the watermark is reset
before each dropd run. Prints the medians and the ratio to the floor.
"""

import argparse
import os
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

FLOOR = """
import csv, resource, sqlite3, sys, time
started = time.perf_counter()
connection = sqlite3.connect(sys.argv[1])
rows = connection.execute(
    "SELECT c.crm_id, c.id, c.first_name, c.last_name, m.channel, m.campaign_id, m.campaign_name, m.timestamp, "
    "m.direction, m.body, m.outgoing_source, m.media, m.script_id, m.script_name FROM messages m "
    "LEFT JOIN contacts c ON c.partner = m.partner AND c.contact_id = m.contact_id WHERE m.partner = 'bench' ORDER BY m.id"
)
with open(sys.argv[2], "w", newline="") as handle:
    writer = csv.writer(handle)
    for row in rows:
        writer.writerow(row)
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
"""

DROPD = """
import resource, sys, time
sys.path.insert(0, sys.argv[2])
from daemon.config.settings import load_config
from daemon.exports.runs import run_export
from daemon.runs.lifecycle import RunContext
from daemon.store import open_store
from daemon.logs import configure_logging
configure_logging("warning", stream=sys.stderr)
config = load_config(sys.argv[1])
store = open_store(config)
partner, feed = config.feed("conversations")
started = time.perf_counter()
run = run_export(RunContext(store, config), partner, feed, "bench")
assert run.status == "success", run.reason
print(time.perf_counter() - started, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, run.rows_in_file)
"""


def make_store(root: Path, rows: int) -> Path:
    (root / "partners.d").mkdir()
    (root / "dropd.toml").write_text(
        '[daemon]\nstate_dir = "state"\ndrop_root = "drop"\n[sftp]\nlisten = "127.0.0.1:0"\nhost_keys = ["state/key"]\n'
    )
    (root / "partners.d" / "bench.toml").write_text(
        textwrap.dedent(
            """\
            [partner]
            name = "bench"
            password_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"
            [[feed]]
            name = "conversations"
            kind = "conversations_export"
            prefix = "conversations"
            keep_days = 1
            """
        )
    )
    subprocess.run(
        [sys.executable, "-c", "import sys; sys.path.insert(0, sys.argv[2]); from daemon.config.settings import load_config; "
         "from daemon.store import open_store; open_store(load_config(sys.argv[1]))", str(root / "dropd.toml"), str(ROOT)],
        check=True,
    )  # fmt: skip
    database = root / "state" / "dropd.db"
    connection = sqlite3.connect(database, isolation_level=None)
    connection.execute("BEGIN")
    connection.executemany(
        "INSERT INTO contacts (partner, contact_id, crm_id, first_name, last_name, mobile_number, created_at, updated_at) "
        "VALUES ('bench', ?, ?, 'Ada', 'Lovelace', ?, '2026-01-01', '2026-01-01')",
        ((f"S{n}", f"CRM{n}", f"+1202555{n:04d}") for n in range(1000)),
    )
    connection.executemany(
        "INSERT INTO messages (partner, message_key, contact_id, channel, timestamp, direction, body, outgoing_source, "
        "campaign_id, campaign_name, script_id, script_name, media, imported_at) "
        "VALUES ('bench', ?, ?, ?, ?, ?, ?, ?, 'C1', 'Fall outreach', 'S1', 'Welcome', ?, '2026-01-01')",
        (
            (f"m{n}", f"S{n % 1000}", ("web", "twilio")[n % 2], f"2026-11-{1 + n % 28:02d}T10:{n % 60:02d}:00+00:00",
             ("incoming", "outgoing")[n % 2], f"Message number {n}: can I change my appointment to Tuesday?",
             None if n % 2 == 0 else ("AI", "Live Chat")[n % 4 // 2], "" if n % 10 else '["https://x.example/a.png"]')
            for n in range(rows)
        ),
    )  # fmt: skip
    connection.execute("COMMIT")
    connection.close()
    return root / "dropd.toml"


def measure(script: str, *args) -> list[str]:
    result = subprocess.run([sys.executable, "-c", script, *args], capture_output=True, text=True, check=True)
    return result.stdout.split()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropd-bench-export-") as work:
        root = Path(work)
        config = make_store(root, args.rows)
        database = root / "state" / "dropd.db"
        floors, dropds, rss = [], [], []
        for _ in range(args.repeat):
            seconds, _peak = measure(FLOOR, str(database), str(root / "floor.csv"))
            floors.append(float(seconds))
            with sqlite3.connect(database) as connection:
                connection.execute("DELETE FROM export_watermarks")
            seconds, peak, rows = measure(DROPD, str(config), str(ROOT))
            assert int(rows) == args.rows
            dropds.append(float(seconds))
            rss.append(int(peak))
            for path in (root / "drop" / "bench" / "outbox").iterdir():
                os.unlink(path)
        floor, dropd = statistics.median(floors), statistics.median(dropds)
        print(f"rows: {args.rows:,}; medians of {args.repeat}")
        print(f"floor (sqlite3 + csv.writer): {floor:6.2f} s  {args.rows / floor:10,.0f} rows/s")
        print(f"dropd conversations export:   {dropd:6.2f} s  {args.rows / dropd:10,.0f} rows/s  "
              f"peak RSS {max(rss) / 1024:.0f} MB  ratio {dropd / floor:.2f}x")  # fmt: skip


if __name__ == "__main__":
    main()
