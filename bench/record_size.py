"""Import memory against record size: the same volume in huge records and in small ones.

    python3 bench/record_size.py [--megabytes 150] [--repeat 3]

Two contacts files of the same size: one of 100 KB records (a 100,000-character custom cell
each), one of 100-byte records. Each is imported by `dropd ingest` into a fresh store, in its
own process, `--repeat` times; prints the median peak RSS of each and their difference. Goal:
less than 64 MiB apart, so that memory stays flat in the size of a record (batches are
bounded by characters as well as by records).
"""

import argparse
import importlib.util
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
_spec = importlib.util.spec_from_file_location("import_bench", HERE / "import.py")
import_bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(import_bench)

BIG_RECORD = 100_000
SMALL_RECORD = 100


def write_big_records(path: Path, size: int) -> int:
    """Records of about 100 KB: the usual row with a 100,000-character Major."""
    count = max(1, size // BIG_RECORD)
    filler = "m" * (BIG_RECORD - 100)
    with open(path, "w", newline="") as handle:
        handle.write(",".join(import_bench.HEADER) + "\n")
        for index in range(count):
            row = import_bench.row(index)
            row[7] = filler
            handle.write(",".join(row) + "\n")
    return count


def measure(path: Path, feed: str = "students") -> float:
    """Peak RSS (MiB) of `dropd ingest` of `path` into a fresh store."""
    root = Path(tempfile.mkdtemp(prefix="dropd-record-bench-"))
    try:
        config = import_bench.write_config(root)
        _, rss = import_bench.timed_process(
            [sys.executable, "-m", "daemon.cli", "ingest", "-c", str(config), feed, str(path)]
        )
        return rss
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--megabytes", type=int, default=150)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dropd-record-files-"))
    try:
        size = args.megabytes * 1_000_000
        big, small = work / "StudentData_big.csv", work / "StudentData_small.csv"
        big_count = write_big_records(big, size)
        import_bench.write_file(small, size // (SMALL_RECORD + 1))
        print(f"{big_count:,} records of ~100 KB ({big.stat().st_size / 2**20:.0f} MiB) and "
              f"{size // (SMALL_RECORD + 1):,} records of ~100 bytes ({small.stat().st_size / 2**20:.0f} MiB)")  # fmt: skip
        peaks = {"100 KB records": [], "100-byte records": []}
        for _ in range(args.repeat):  # alternating, so that both meet the same machine
            peaks["100 KB records"].append(measure(big))
            peaks["100-byte records"].append(measure(small))
        medians = {label: statistics.median(values) for label, values in peaks.items()}
        for label, values in peaks.items():
            runs = ", ".join(f"{value:.0f}" for value in values)
            print(f"  {label:<18} peak RSS {medians[label]:6.0f} MiB (median; runs: {runs})")
        difference = abs(medians["100 KB records"] - medians["100-byte records"])
        print(f"  difference {difference:.0f} MiB (goal < 64 MiB: {'met' if difference < 64 else 'NOT met'})")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parent))
    sys.exit(main())
