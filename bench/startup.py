"""How fast `dropd --version` and `dropd --help` start, against a bare Python in the same run.

    python3 bench/startup.py [--repeat 21]

Each command and `python3 -c pass` run alternately, `--repeat` times each; prints the
median of the pairwise ratios (each dropd run divided by the bare run beside it), which
shared machines swing far less than either median alone. Goal: at most 5x (it was ~17x
when every command's imports were loaded to print the help).
"""

import argparse
import statistics
import subprocess
import sys
import time

BARE = [sys.executable, "-c", "pass"]
COMMANDS = {
    "dropd --version": [sys.executable, "-m", "daemon.cli", "--version"],
    "dropd --help": [sys.executable, "-m", "daemon.cli", "--help"],
}


def seconds(command: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(command, check=True, capture_output=True)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--repeat", type=int, default=21)
    args = parser.parse_args()
    for name, command in COMMANDS.items():
        seconds(command)  # warm the page cache and the bytecode
        pairs = [(seconds(BARE), seconds(command)) for _ in range(args.repeat)]
        ratio = statistics.median(ours / bare for bare, ours in pairs)
        bare = statistics.median(bare for bare, _ in pairs)
        ours = statistics.median(ours for _, ours in pairs)
        print(
            f"{name:<16} {ours * 1000:6.1f} ms   python -c pass {bare * 1000:5.1f} ms   ratio {ratio:.2f}x (goal <= 5)"
        )


if __name__ == "__main__":
    main()
