"""Decrypt-and-import against plain import of the same contacts file, in the same run.

    python3 bench/openpgp.py [--rows 1000000] [--repeat 3]

The file of bench/import.py (12 columns), encrypted by the `gpg` CLI to a fresh key (binary,
not signed). Each repeat runs, in turn, `dropd ingest` of the plain file into a new store and
`dropd ingest` of the encrypted one into another new store (a first import each time), each
in its own process. Prints seconds and peak RSS of each, and the median of the pairwise
ratios encrypted / plain. Goal: <= 1.3, peak RSS as flat as the plain import's.
"""

import argparse
import importlib.util
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
spec = importlib.util.spec_from_file_location("import_bench", HERE / "import.py")
import_bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_bench)


def gpg(home: Path, *args: str) -> None:
    subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--trust-model", "always",
                    *args], check=True, capture_output=True)  # fmt: skip


def store_root(work: Path, name: str, key: Path | None) -> Path:
    """A config of its own (so each import is a first one); with `key`, the feed decrypts."""
    root = work / name
    root.mkdir()
    config = import_bench.write_config(root)
    if key is not None:
        partner = root / "partners.d" / "bench.toml"
        text = partner.read_text().replace(
            'prefix = "StudentData"\n', f'prefix = "StudentData"\ndecrypt_key_file = "{key}"\n', 1
        )
        partner.write_text(text)
    return config


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dropd-openpgp-bench-"))
    home = Path(tempfile.mkdtemp(prefix="gnupg-bench-"))
    try:
        plain = work / "StudentData_1.csv"
        import_bench.write_file(plain, args.rows)
        gpg(home, "--passphrase", "", "--quick-gen-key", "bench <bench@example.org>", "future-default", "default",
            "never")  # fmt: skip
        key = work / "bench.sec.asc"
        subprocess.run(["gpg", "--homedir", str(home), "--batch", "--pinentry-mode", "loopback", "--passphrase", "",
                        "--armor", "--output", str(key), "--export-secret-keys", "bench@example.org"], check=True)  # fmt: skip
        sealed = work / "StudentData_1.csv.pgp"
        gpg(home, "--recipient", "bench@example.org", "--output", str(sealed), "--encrypt", str(plain))
        print(f"contacts, {args.rows:,} rows: {plain.stat().st_size / 2**20:.0f} MiB plain, "
              f"{sealed.stat().st_size / 2**20:.0f} MiB encrypted")  # fmt: skip
        ratios = []
        for attempt in range(1, args.repeat + 1):
            results = {}
            for name, file, decrypting in (("plain", plain, None), ("encrypted", sealed, key)):
                config = store_root(work, f"{name}-{attempt}", decrypting)
                command = [sys.executable, "-m", "daemon.cli", "ingest", "-c", str(config), "students", str(file)]
                results[name] = import_bench.timed_process(command)
                shutil.rmtree(config.parent / "state", ignore_errors=True)
            (plain_s, plain_rss), (sealed_s, sealed_rss) = results["plain"], results["encrypted"]
            ratios.append(sealed_s / plain_s)
            print(f"  run {attempt}: plain {plain_s:7.2f} s, peak RSS {plain_rss:5.0f} MiB   "
                  f"decrypt+import {sealed_s:7.2f} s, peak RSS {sealed_rss:5.0f} MiB   ratio {ratios[-1]:.2f}")  # fmt: skip
        print(f"  median ratio decrypt+import / plain import = {statistics.median(ratios):.2f} (goal <= 1.3)")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True, check=False)
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
