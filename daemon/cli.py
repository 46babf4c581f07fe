"""The `dropd` command line."""

import argparse
import os
import sys
from pathlib import Path

DEFAULT_CONFIG = "/etc/dropd/dropd.toml"


def _command(name: str):
    """The handler `name` of `daemon/commands.py`, imported only when a command runs."""

    def run(args) -> int:
        import gc
        import importlib

        from daemon.logs import configure_logging

        if args.command != "run":
            # Commands print their results on stdout; their log lines go to stderr.
            configure_logging("warning", stream=sys.stderr)
        handler = getattr(importlib.import_module("daemon.commands"), name)
        # Everything imported so far lives as long as the process: out of the cyclic collector's
        # sight, its full collections during a large import stop walking it (a tenth of a re-import).
        gc.freeze()
        return handler(args)

    return run


class _Version(argparse.Action):
    """--version, looked up only when asked (reading the installed metadata costs time)."""

    def __init__(self, option_strings, dest=argparse.SUPPRESS, default=argparse.SUPPRESS, help=None):
        super().__init__(option_strings, dest=dest, default=default, nargs=0, help=help)

    def __call__(self, parser, *_):
        print(f"dropd {_version()}")
        parser.exit()


def _version() -> str:
    import importlib.metadata

    try:
        return importlib.metadata.version("dropd")
    except importlib.metadata.PackageNotFoundError:
        return "unknown (not installed; run `pip install .`)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dropd",
        description="Partner file-exchange daemon: SFTP/FTPS drop zone, feed imports, run history.",
        epilog="Each command takes -c CONFIG (default /etc/dropd/dropd.toml); `dropd COMMAND --help` for its options.",
    )
    parser.add_argument("--version", action=_Version, help="show the version and exit")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(command):
        command.add_argument(
            "-c", "--config", default=DEFAULT_CONFIG, help=f"main config file (default {DEFAULT_CONFIG})"
        )
        return command

    run = with_config(commands.add_parser("run", help="run the daemon in the foreground (what systemd starts)"))
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_command("run"))
    check = with_config(commands.add_parser("check-config", help="validate the config; exit 1 listing every error"))
    check.set_defaults(handler=_command("check_config"))
    ingest = with_config(
        commands.add_parser("ingest", help="import a local file through a feed now (the manual import)")
    )
    ingest.add_argument("feed")
    ingest.add_argument("file")
    ingest.add_argument("--dry-run", action="store_true", help="show what would happen and change nothing")
    ingest.add_argument("--force", action="store_true", help="import even if an identical file was imported before")
    ingest.add_argument("--json", action="store_true")
    ingest.set_defaults(handler=_command("ingest"))
    run_now = with_config(commands.add_parser("run-now", help="start a feed's run now, through the running daemon"))
    run_now.add_argument("feed")
    run_now.add_argument(
        "--force", action="store_true", help="import files even if identical ones were imported before"
    )
    run_now.add_argument("--timeout", type=float, default=3600, help="seconds to wait for the run (default 3600)")
    run_now.add_argument("--json", action="store_true")
    run_now.set_defaults(handler=_command("run_now"))
    runs = with_config(commands.add_parser("runs", help="recent runs, newest first"))
    runs.add_argument("--feed")
    runs.add_argument("--status", choices=["success", "running", "skipped", "failed"])
    runs.add_argument(
        "--since",
        metavar="DATE",
        help="runs started at or after DATE (2026-11-27 or 2026-11-27T06:00, daemon.timezone)",
    )
    runs.add_argument("--until", metavar="DATE", help="runs started before DATE (a date: up to the end of that day)")
    runs.add_argument("--type", metavar="KIND", help="runs of feeds of this kind (contacts, conversations_export, ...)")
    runs.add_argument("--limit", type=int, default=50)
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=_command("runs"))
    schedule = with_config(commands.add_parser("schedule", help="each feed's next five scheduled runs"))
    schedule.add_argument("--feed", help="only this feed")
    schedule.add_argument("--json", action="store_true")
    schedule.set_defaults(handler=_command("schedule"))
    migrate = with_config(
        commands.add_parser("migrate-store", help="copy the store into another (SQLite to PostgreSQL), verified")
    )
    migrate.add_argument("--to", required=True, metavar="URL", help="postgresql://USER@HOST/DB or sqlite:PATH")
    migrate.add_argument("--password-file", type=Path, help="the target PostgreSQL's password (not in the URL)")
    migrate.add_argument("--force", action="store_true", help="empty a target that holds data first")
    migrate.set_defaults(handler=_command("migrate_store"))
    contacts = with_config(commands.add_parser("contacts", help="the contacts the store holds for a partner"))
    contacts.add_argument("--partner", required=True)
    contacts.add_argument("--json", action="store_true")
    contacts.set_defaults(handler=_command("partner_records"))
    subscribers = with_config(
        commands.add_parser("subscribers", help="a partner's subscriber list as the store holds it")
    )
    subscribers.add_argument("--partner", required=True)
    subscribers.add_argument("--all", action="store_true", help="include removed subscribers")
    subscribers.add_argument("--json", action="store_true")
    subscribers.set_defaults(handler=_command("partner_records"))
    for name, what in (
        ("events", "engagement events (from activity feeds)"),
        ("messages", "message log (from messages feeds)"),
    ):
        listing = with_config(commands.add_parser(name, help=f"a partner's {what}, as the store holds it"))
        listing.add_argument("--partner", required=True)
        listing.add_argument("--json", action="store_true")
        listing.set_defaults(handler=_command("partner_records"))
    status = with_config(commands.add_parser("status", help="is the daemon running and healthy, and what it is doing"))
    status.add_argument("--json", action="store_true")
    status.set_defaults(handler=_command("status"))
    bans = with_config(commands.add_parser("bans", help="addresses banned after failed logins, and until when"))
    bans.add_argument("--json", action="store_true")
    bans.set_defaults(handler=_command("bans"))
    reload = with_config(
        commands.add_parser(
            "reload", help="have the running daemon re-read its config; exit 1 with every error if rejected"
        )
    )
    reload.set_defaults(handler=_command("reload"))
    unban = with_config(commands.add_parser("unban", help="lift the ban of an address now"))
    unban.add_argument("address")
    unban.set_defaults(handler=_command("unban"))
    test_connection = with_config(
        commands.add_parser("test-connection", help="reach an export feed's destination step by step (no file is sent)")
    )
    test_connection.add_argument("feed")
    test_connection.set_defaults(handler=_command("test_connection"))
    test_smtp = with_config(commands.add_parser("test-smtp", help="send a test message through [smtp], step by step"))
    test_smtp.add_argument("--to", required=True, help="the address to send it to")
    test_smtp.set_defaults(handler=_command("test_smtp"))
    mail = with_config(
        commands.add_parser("mail", help="the mail outbox: list what waits or failed, or send one again")
    )
    which = mail.add_mutually_exclusive_group(required=True)
    which.add_argument("--pending", action="store_true", help="list messages waiting to be sent or refused for good")
    which.add_argument("--retry", type=int, metavar="ID", help="send message ID again (after fixing its cause)")
    which.add_argument(
        "--samples",
        type=Path,
        metavar="DIR",
        help="write a sample of every kind of mail dropd sends to DIR (no config read)",
    )
    mail.add_argument("--json", action="store_true")
    mail.set_defaults(handler=_command("mail"))
    passwd = commands.add_parser("passwd", help="read a password (terminal or stdin) and print its argon2id hash")
    passwd.set_defaults(handler=_command("passwd"))
    return parser


def main(argv=None) -> int:
    try:
        args = build_parser().parse_args(argv)
        status = args.handler(args)
        sys.stdout.flush()
        return status
    except BrokenPipeError:
        # The reader of our output went away (`dropd runs | head -1`): end quietly, as a tool
        # killed by SIGPIPE does (128 + 13), without a traceback; stdout is pointed at
        # /dev/null so that the flush at exit has nowhere to fail (Python's `signal` docs).
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


if __name__ == "__main__":
    sys.exit(main())
