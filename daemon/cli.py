"""The `dropd` command line."""

import argparse
import getpass
import sys

from daemon.config import ConfigInvalid, load_config
from daemon.gatekeeper import hash_password
from daemon.logs import configure_logging
from daemon.service import Daemon, StartupError

DEFAULT_CONFIG = "/etc/dropd/dropd.toml"


def _check_config(args) -> int:
    try:
        config = load_config(args.config)
    except ConfigInvalid as invalid:
        for error in invalid.errors:
            print(error, file=sys.stderr)
        print(f"{len(invalid.errors)} error(s) in the configuration", file=sys.stderr)
        return 1
    feeds = sum(1 for _ in config.feeds())
    print(f"{config.file}: OK ({len(config.partners)} partners, {feeds} feeds)")
    return 0


def _read_new_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat: "):
            raise SystemExit("dropd passwd: the two passwords differ; nothing printed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def _passwd(args) -> int:
    password = _read_new_password()
    if len(password) < 8:
        print("dropd passwd: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def _run(args) -> int:
    configure_logging(args.log_level)
    try:
        config = load_config(args.config)
    except ConfigInvalid as invalid:
        for error in invalid.errors:
            print(error, file=sys.stderr)
        return 1
    try:
        return Daemon(config).run()
    except StartupError as exc:
        print(f"dropd: cannot start: {exc}", file=sys.stderr)
        return 1


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="dropd", description="Partner file-exchange daemon (SFTP/FTPS drop zone).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def with_config(command):
        command.add_argument("-c", "--config", default=DEFAULT_CONFIG, help=f"main config file (default {DEFAULT_CONFIG})")
        return command

    run = with_config(commands.add_parser("run", help="run the daemon in the foreground (what systemd starts)"))
    run.add_argument("--log-level", default="info", choices=["debug", "info", "warning", "error"])
    run.set_defaults(handler=_run)
    check = with_config(commands.add_parser("check-config", help="validate the config; exit 1 listing every error"))
    check.set_defaults(handler=_check_config)
    passwd = commands.add_parser("passwd", help="read a password (terminal or stdin) and print its argon2id hash")
    passwd.set_defaults(handler=_passwd)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    return args.handler(args)


if __name__ == "__main__":
    sys.exit(main())
