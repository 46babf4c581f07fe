"""What each `dropd` command does: the handlers `daemon/cli.py` calls once it has parsed the
command line. Kept apart so that `dropd --help` and `dropd --version` load none of this."""

import datetime
import getpass
import json
import sys
import zoneinfo
from pathlib import Path

from daemon import schedules
from daemon.clock import local_moment
from daemon.config.settings import ConfigInvalid, control_socket_of, load_config
from daemon.control import ControlUnavailable, send_command
from daemon.dropzone.passwords import hash_password
from daemon.dropzone.quota import format_bytes
from daemon.feeds.runs import DryRunReport, ingest_file
from daemon.logs import configure_logging
from daemon.notify import smtp
from daemon.notify.mailer import Mailer, smtp_server
from daemon.runs.lifecycle import RunContext
from daemon.store import open_store, probe_store
from daemon.store.records import NoStoreYet, RunRecord, SchemaError
from daemon.text import printable
from handlers import KINDS


def check_config(args) -> int:
    try:
        config = load_config(args.config, load_keys=True)
    except ConfigInvalid as invalid:
        for error in invalid.errors:
            print(error, file=sys.stderr)
        print(f"{len(invalid.errors)} error(s) in the configuration", file=sys.stderr)
        return 1
    feeds = sum(1 for _ in config.feeds())
    if config.daemon.store != "sqlite":
        try:
            server = probe_store(config)
        except SchemaError as exc:
            print(f"{config.file}: {exc}", file=sys.stderr)
            return 1
        print(f"store: {server}")
    print(f"{config.file}: OK ({len(config.partners)} partners, {feeds} feeds)")
    return 0


def _read_new_password() -> str:
    if sys.stdin.isatty():
        first = getpass.getpass("Password: ")
        if first != getpass.getpass("Repeat: "):
            raise SystemExit("dropd passwd: the two passwords differ; nothing printed")
        return first
    return sys.stdin.readline().rstrip("\r\n")


def passwd(args) -> int:
    password = _read_new_password()
    if len(password) < 8:
        print("dropd passwd: use at least 8 characters", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def run(args) -> int:
    # Only the daemon needs the servers; other commands start faster without loading them.
    from daemon.metrics import Metrics
    from daemon.service import Daemon, StartupError

    try:
        config = load_config(args.config, load_keys=True)
    except ConfigInvalid as invalid:
        for error in invalid.errors:
            print(error, file=sys.stderr)
        return 1
    metrics = Metrics() if config.metrics.listen else None
    configure_logging(args.log_level, observers=[metrics] if metrics else ())
    try:
        return Daemon(config, metrics).run()
    except StartupError as exc:
        print(f"dropd: cannot start: {exc}", file=sys.stderr)
        return 1


def _load_config(args):
    try:
        return load_config(args.config)
    except ConfigInvalid as invalid:
        raise SystemExit("\n".join(map(str, invalid.errors))) from None


def _load_config_leniently(args):
    """The config without the partner files that are broken (each named in a warning): what
    a command that only reads needs, and answers with, when a partner file is being edited."""
    try:
        config = load_config(args.config, skip_broken_partners=True)
    except ConfigInvalid as invalid:
        raise SystemExit("\n".join(map(str, invalid.errors))) from None
    for error in config.skipped:
        print(
            f"dropd: warning: {error} (that partner file is left out; `dropd check-config` lists every error)",
            file=sys.stderr,
        )
    return config


def _load(args, read_only: bool = True):
    """The config and the store; read-only commands never wait for the daemon or migrate, and
    still answer when a partner file they do not need is broken (with a warning)."""
    config = _load_config_leniently(args) if read_only else _load_config(args)
    try:
        return config, open_store(config, read_only=read_only)
    except NoStoreYet:
        return config, None
    except SchemaError as exc:
        raise SystemExit(f"dropd: {exc}") from None


def _find_feed(config, name: str):
    try:
        return config.feed(name)
    except KeyError:
        known = ", ".join(feed.name for _, feed in config.feeds()) or "none"
        raise SystemExit(f"dropd: no feed named {name!r} in {config.file} (feeds: {known})") from None


COUNTED = ("created", "updated", "unchanged", "partial", "removed", "too_old", "opted_out")


def _local_time(stamp: str, zone: zoneinfo.ZoneInfo) -> str:
    return datetime.datetime.fromisoformat(stamp).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")


def _print_runs(records, as_json: bool, config) -> None:
    """Runs as JSON, or as lines a person reads: times in daemon.timezone, counts that add up."""
    if as_json:
        print(json.dumps([record.as_dict() for record in records], indent=2))
        return
    if not records:
        print("no runs")
        return
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    several = len({r.instance for r in records if r.instance}) > 1 or config.daemon.store != "sqlite"
    for r in records:
        on = f"  on {r.instance}" if several and r.instance else ""
        file = printable(r.file) if r.file else "-"
        print(f"#{r.id}  {_local_time(r.started, zone)}  {r.feed} ({r.kind})  {r.status}  {r.trigger}  {file}{on}")
        if r.rows_in_file is not None:
            details = ", ".join(
                f"{r.details[name]:,} {name.replace('_', ' ')}" for name in COUNTED if r.details.get(name)
            )
            rejected = f"{r.rows_rejected:,} rejected"
            print(f"      {r.rows_in_file:,} rows: {', '.join(part for part in (details, rejected) if part)}")
        if r.reason:
            print(f"      reason: {printable(r.reason)}")
        if r.error_file:
            print(f"      errors: {r.error_file}")


def ingest(args) -> int:
    config, store = _load(args, read_only=False)
    partner, feed = _find_feed(config, args.feed)
    if feed.direction != "import":
        raise SystemExit(f"dropd ingest: {feed.name} is an export feed; `dropd run-now {feed.name}` runs it")
    path = Path(args.file)
    if not path.is_file():
        print(f"dropd ingest: {path} is not a file", file=sys.stderr)
        return 1
    # The recap is queued with the run; the running daemon's sender delivers it.
    context = RunContext(store, config, notify=Mailer(lambda: config).queue_recap)
    result = ingest_file(context, partner, feed, path, force=args.force, dry_run=args.dry_run)
    if isinstance(result, DryRunReport):
        return _print_dry_run(result, args.json)
    _print_runs([result], args.json, config)
    return 0 if result.status in ("success", "skipped") else 1


def _print_dry_run(report: DryRunReport, as_json: bool) -> int:
    counts = report.counts
    summary = {
        "file": report.file,
        "would_fail": report.reason if counts is None else None,
        "note": report.reason if counts is not None else None,
        "rows": counts.rows if counts else None,
        "would_create": counts.created if counts else 0,
        "would_update": counts.updated if counts else 0,
        "unchanged": counts.unchanged if counts else 0,
        "would_reject": counts.rejected if counts else 0,
        "errors": [
            dict(zip(("row", "code", "failure_type", "message"), error, strict=True)) for error in report.errors
        ],
    }
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"dry run of {printable(report.file)}: nothing was changed")
        if counts is None:
            print(f"  the run would fail: {printable(report.reason)}")
        else:
            print(
                f"  rows {counts.rows}: would create {counts.created}, update {counts.updated}, "
                f"leave {counts.unchanged} unchanged, reject {counts.rejected}"
            )
        for error in summary["errors"]:
            print(f"  row {error['row']}: {error['code']} ({error['failure_type']}): {printable(error['message'])}")
    return 0 if counts is not None else 1


def run_now(args) -> int:
    config = _load_config(args)
    _find_feed(config, args.feed)
    request = {"command": "run-now", "feed": args.feed, "force": args.force, "timeout": args.timeout}
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)

    def progress(text: str) -> None:
        now = datetime.datetime.now(zone).strftime("%H:%M:%S")
        print(f"{now}  {args.feed}: {printable(text)}", file=sys.stderr, flush=True)

    try:
        reply = send_command(config.daemon.control_socket, request, timeout=args.timeout + 5, on_progress=progress)
    except KeyboardInterrupt:
        print(
            f"dropd run-now: stopped waiting; the run of {args.feed} goes on in the daemon "
            f"(`dropd runs --feed {args.feed}` shows how it ends)",
            file=sys.stderr,
        )
        return 130
    except ControlUnavailable as exc:
        print(
            f"dropd run-now: {exc}; start it, or import a file by hand with `dropd ingest {args.feed} FILE`",
            file=sys.stderr,
        )
        return 1
    except PermissionError:
        print(
            f"dropd run-now: no permission on {config.daemon.control_socket}; run as root or the service user",
            file=sys.stderr,
        )
        return 1
    if not reply.get("ok"):
        print(f"dropd run-now: {reply.get('error')}", file=sys.stderr)
        return 1
    if reply.get("message"):
        print(reply["message"])
    records = [RunRecord(**run) for run in reply["runs"]]
    _print_runs(records, args.json, config)
    return 1 if any(record.status == "failed" for record in records) else 0


def _moment(text: str, zone: zoneinfo.ZoneInfo, option: str, day_end: bool = False) -> str:
    """An ISO date or date-time in the daemon's zone, as a UTC stamp; a date given to --until
    means the end of that day."""
    try:
        return local_moment(text, zone, day_end)
    except ValueError:
        raise SystemExit(
            f"dropd runs: {option} {text!r} is not a date (2026-11-27) or a date and time (2026-11-27T06:00)"
        ) from None


def runs(args) -> int:
    config, store = _load(args)
    if args.feed:
        _find_feed(config, args.feed)
    if args.type and args.type not in KINDS:
        raise SystemExit(f"dropd runs: no kind named {args.type!r}; kinds: {', '.join(sorted(KINDS))}")
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    since = _moment(args.since, zone, "--since") if args.since else None
    until = _moment(args.until, zone, "--until", day_end=True) if args.until else None
    if not args.json:
        _print_queue(config)
    records = []
    if store:
        with store.reading() as tx:
            records = tx.runs.recent(
                feed=args.feed, status=args.status, limit=args.limit, since=since, until=until, kind=args.type
            )
    _print_runs(records, args.json, config)
    return 0


def schedule(args) -> int:
    """Each feed's next five scheduled runs, in daemon.timezone and UTC (on_arrival said)."""
    config = _load_config_leniently(args)
    feeds = [_find_feed(config, args.feed)] if args.feed else list(config.feeds())
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    now = datetime.datetime.now(datetime.UTC)
    listing = []
    for partner, feed in feeds:
        entries = [entry for entry in (schedules.parse(text, feed.direction) for text in feed.schedule) if entry]
        upcoming = schedules.next_runs(entries, now, config.daemon.timezone, feed.name, 5) if partner.runs(feed) else []
        listing.append({
            "feed": feed.name, "partner": partner.name, "schedule": list(feed.schedule),
            "on_arrival": schedules.ON_ARRIVAL in feed.schedule, "enabled": partner.runs(feed),
            "next": [{"local": instant.astimezone(zone).isoformat(), "utc": instant.isoformat()} for instant in upcoming],
        })  # fmt: skip
    if args.json:
        print(json.dumps(listing, indent=2))
        return 0
    for item in listing:
        print(f"{item['feed']} ({item['partner']}): {', '.join(item['schedule']) or 'no schedule'}")
        if not item["enabled"]:
            print("  disabled: no runs")
        for moment in item["next"]:
            when = datetime.datetime.fromisoformat(moment["utc"]).astimezone(zone)
            print(f"  {when:%a %Y-%m-%d %H:%M %Z}   {moment['utc'][:16].replace('T', ' ')} UTC")
        if item["enabled"] and not item["next"]:
            print("  on arrival only" if item["on_arrival"] else "  never: no schedule entries")
    return 0


def migrate_store(args) -> int:
    """Copy the config's store into `--to`, verify each table, say what to change."""
    from daemon.store import moving

    config = _load_config(args)
    if _daemon_answers(config.daemon.control_socket):
        raise SystemExit("dropd migrate-store: the daemon is running; stop it first (systemctl stop dropd)")
    if config.daemon.store == "sqlite":
        source_name, source = (
            str(config.daemon.state_dir / "dropd.db"),
            f"sqlite:{config.daemon.state_dir / 'dropd.db'}",
        )
    else:
        source_name = source = config.daemon.store
    if args.to.rstrip("/") == source.rstrip("/"):
        raise SystemExit("dropd migrate-store: --to is the store in use; name another")
    try:
        moving.check_address(args.to)
        origin = moving.side_for(source, config.daemon.store_password_file, create=False)
        target = moving.side_for(args.to, args.password_file, create=True)
    except (moving.MoveRefused, SchemaError, OSError) as exc:
        raise SystemExit(f"dropd migrate-store: {exc}") from None
    shown: dict[str, int] = {}

    def progress(table: str, done: int, total: int) -> None:
        if done == 0 or done == total or done - shown.get(table, 0) >= 100_000:
            shown[table] = done
            print(f"  {table}: {done:,} of {total:,} rows", file=sys.stderr, flush=True)

    print(f"copying {source_name} into {args.to}", file=sys.stderr)
    try:
        moved = moving.move(origin, target, args.force, progress)
    except moving.MoveRefused as exc:
        raise SystemExit(f"dropd migrate-store: {exc}") from None
    finally:
        origin.close()
        target.close()
    for table in moved:
        print(f"{table.table:<20} {table.rows:>12,} rows  sha256 {table.digest[:16]}  verified")
    if args.to.startswith("sqlite:"):
        print("\nDone. This dropd keeps its SQLite store at <state_dir>/dropd.db: copy the new file there and "
              'set `store = "sqlite"` in [daemon] of ' + str(config.file))  # fmt: skip
    else:
        print(f'\nDone. In [daemon] of {config.file} set:\n  store = "{args.to}"')
        if args.password_file:
            print(f'  store_password_file = "{args.password_file}"')
        print("then start the daemon.")
    return 0


def _daemon_answers(socket_path: Path) -> bool:
    """Whether a daemon answers on its control socket."""
    try:
        send_command(socket_path, {"command": "status"}, timeout=2)
    except (ControlUnavailable, OSError):
        return False
    return True


def _print_queue(config) -> None:
    """Runs waiting for their turn at the store in the running daemon, if one answers."""
    try:
        store = send_command(config.daemon.control_socket, {"command": "status"}, timeout=5)["store"]
    except (ControlUnavailable, OSError, KeyError):
        return
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    for feed, since in sorted(store["waiting"].items()):
        print(f"queued  {_local_time(since, zone)}  {feed}  waiting for {store['writing'] or 'the store'} to finish")


def _control(socket_path: Path, command: str, request: dict, refusal_ok: bool = False) -> dict:
    """Send a request to the running daemon on its control socket; exit with a clear message
    when it cannot answer (or refuses, unless `refusal_ok`)."""
    try:
        reply = send_command(socket_path, request, timeout=30)
    except ControlUnavailable as exc:
        raise SystemExit(f"dropd {command}: {exc}") from None
    except PermissionError:
        raise SystemExit(f"dropd {command}: no permission on {socket_path}; run as root or the service user") from None
    if not reply.get("ok") and not refusal_ok:
        raise SystemExit(f"dropd {command}: {reply.get('error')}")
    return reply


def reload(args) -> int:
    """What `systemctl reload` runs: the daemon re-reads its config and answers; a rejected
    config (exit 1, every error on stderr) leaves the running one in force."""
    try:
        socket_path = control_socket_of(Path(args.config))
    except ConfigInvalid as invalid:
        raise SystemExit("\n".join(map(str, invalid.errors))) from None
    reply = _control(socket_path, "reload", {"command": "reload"}, refusal_ok=True)
    if reply.get("ok"):
        print(f"dropd reloaded {args.config}")
        return 0
    for error in reply.get("errors", []):
        print(error, file=sys.stderr)
    print(
        f"dropd reload: the configuration was rejected; the running one stays ({len(reply.get('errors', []))} error(s))",
        file=sys.stderr,
    )
    return 1


def status(args) -> int:
    """Exit 0 when the daemon runs and is healthy, 1 when none answers, 2 when unhealthy.
    It answers while a partner file is broken: that is when a rejected reload is looked for."""
    config = _load_config_leniently(args)
    status = _control(config.daemon.control_socket, "status", {"command": "status"})
    if args.json:
        print(json.dumps(status, indent=2))
        return 0 if status["healthy"] else 2
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    minutes, seconds = divmod(status["uptime_seconds"], 60)
    hours, minutes = divmod(minutes, 60)
    print(
        f"dropd {'running' if status['healthy'] else 'UNHEALTHY'} (pid {status['pid']}), up {hours}h {minutes:02d}m {seconds:02d}s"
    )
    for listener in status["listeners"]:
        state = "listening" if listener["serving"] else "NOT ACCEPTING"
        print(f"  {listener['protocol']:<5} {listener['address']:<22} {state}")
    sessions = ", ".join(f"{count} {protocol}" for protocol, count in sorted(status["sessions"].items())) or "none"
    print(f"  sessions: {sessions}; {status['unauthenticated']} not logged in yet")
    for run in status["running"]:
        print(f"  running: {run['feed']} ({run['trigger']}, since {_local_time(run['since'], zone)})")
    for feed in status["waiting"]:
        print(f"  waiting to run: {feed}")
    for feed, since in sorted(status["store"]["waiting"].items()):
        print(
            f"  queued: {feed} (waiting for {status['store']['writing'] or 'the store'} since {_local_time(since, zone)})"
        )
    for run in status["last_runs"]:
        print(f"  last run of {run['feed']}: {run['status']} at {_local_time(run['finished'] or run['started'], zone)}")
    for partner in status["partners"]:
        login = partner["last_login"]
        seen = (
            f"last login {_local_time(login['at'], zone)} ({login['protocol']} from {login['address']})"
            if login
            else "no login since the daemon started"
        )
        use = format_bytes(partner["used"])
        if partner["quota"]:
            use = f"{use} of its {format_bytes(partner['quota'])} quota ({partner['used'] / partner['quota']:.0%})"
        print(f"  partner {partner['partner']}: {seen}; {use}")
    print(f"  banned addresses: {status['bans']}")
    if status.get("pending_mail"):
        print(f"  mail waiting to be sent: {status['pending_mail']} (`dropd mail --pending`)")
    unreachable = status.get("store_unreachable")
    if unreachable:
        print(f"  STORE UNREACHABLE since {_local_time(unreachable['since'], zone)}: {unreachable['error']}")
    for alert in status["alerts"] or ():
        print(f"  ALERT since {_local_time(alert['raised_at'], zone)}: {alert['summary']}")
    reload = status["last_reload"]
    if reload and not reload["accepted"]:
        errors = reload["errors"]
        more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
        print(f"  last reload REJECTED at {_local_time(reload['at'], zone)}, old config kept: {errors[0]}{more}")
    elif reload:
        print(f"  last reload: accepted at {_local_time(reload['at'], zone)}")
    return 0 if status["healthy"] else 2


def bans(args) -> int:
    config = _load_config(args)
    bans = _control(config.daemon.control_socket, "bans", {"command": "bans"})["bans"]
    if args.json:
        print(json.dumps(bans, indent=2))
        return 0
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    for ban in bans:
        until = datetime.datetime.fromtimestamp(ban["until"], zone)
        print(f"{ban['address']:<40} banned until {until:%Y-%m-%d %H:%M:%S %Z}")
    print(f"{len(bans)} banned address{'es' if len(bans) != 1 else ''}")
    return 0


def unban(args) -> int:
    config = _load_config(args)
    _control(config.daemon.control_socket, "unban", {"command": "unban", "address": args.address})
    print(f"{args.address} is no longer banned; its failure count starts again from zero")
    return 0


def _name(record: dict) -> str:
    return " ".join(part for part in (record.get("first_name"), record.get("last_name")) if part) or "-"


def _contact_row(c: dict) -> list[str]:
    status = "opted-out" if c["opted_out"] else "opted-in"
    return [c["contact_id"], _name(c), c["mobile_number"] or "-", c["email"] or "-", c["crm_id"] or "-", status]


def _subscriber_row(s: dict) -> list[str]:
    state = f"removed {s['removed_at'][:10]}" if s["removed_at"] else ("opted-out" if s["opted_out"] else "active")
    return [s["email"], _name(s), s["segment_code"] or "-", state]


def _event_row(e: dict) -> list[str]:
    fields = " ".join(f"{key}={value}" for key, value in sorted(e["fields"].items()))
    return [e["time"], e["event_id"], e["contact_id"], e["action"] or "-", fields or "-"]


def _message_row(m: dict) -> list[str]:
    body = m["body"] if len(m["body"]) <= 60 else m["body"][:57] + "..."
    return [m["timestamp"], m["contact_id"], m["channel"], m["direction"], m["outgoing_source"] or "-", body]


LISTINGS = {
    "contacts": (("CONTACT ID", "NAME", "MOBILE", "EMAIL", "CRM ID", "STATUS"), _contact_row),
    "subscribers": (("EMAIL", "NAME", "SEGMENT", "STATE"), _subscriber_row),
    "events": (("TIME", "EVENT ID", "CONTACT ID", "ACTION", "FIELDS"), _event_row),
    "messages": (("TIMESTAMP", "CONTACT ID", "CHANNEL", "DIRECTION", "SOURCE", "TEXT"), _message_row),
}


def _print_table(header, rows) -> None:
    """Columns padded to their widest cell (the last one is left as it is); every cell shown
    `printable`, as cells hold what partners sent."""
    rows = [[printable(str(cell)) for cell in row] for row in rows]
    widths = [max(len(str(row[index])) for row in [header, *rows]) for index in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [f"{str(cell):<{width}}" for cell, width in zip(row, widths, strict=False)] + [str(row[-1])]
        print("  ".join(cells).rstrip())


def partner_records(args) -> int:
    """contacts, subscribers, events, messages: what the store holds for one partner."""
    config, store = _load(args)
    if args.partner not in config.partners:
        raise SystemExit(f"dropd: no partner named {args.partner!r} in {config.file}")
    found = []
    if store:
        with store.reading() as tx:
            found = {
                "contacts": lambda: tx.contacts.listing(args.partner),
                "subscribers": lambda: tx.subscribers.listing(args.partner, include_removed=args.all),
                "events": lambda: tx.events.listing(args.partner),
                "messages": lambda: tx.messages.listing(args.partner),
            }[args.command]()
    if args.json:
        print(json.dumps(found, indent=2))
        return 0
    header, row = LISTINGS[args.command]
    if found:
        _print_table(header, [row(record) for record in found])
    print(f"{len(found)} {args.command}")
    return 0


def test_smtp(args) -> int:
    """Send a test message through [smtp], saying which step failed: dns, tcp, tls, auth, the recipient."""
    config = _load_config(args)
    settings = config.smtp
    if settings is None:
        raise SystemExit(f"dropd test-smtp: {config.file} has no [smtp] section")
    server = smtp_server(settings)
    print(f"sending a test message to {args.to} through {server.host}:{server.port} (security = {server.security})")
    steps = ["dns", "tcp"] + (["tls"] if server.security != "none" else []) + (["auth"] if server.username else [])
    try:
        client = smtp.connect(server)
    except smtp.DeliveryError as error:
        _print_steps(steps, error)
        return 1
    try:
        smtp.send(client, Mailer(lambda: config).test_message(args.to), settings.sender, args.to)
    except smtp.DeliveryError as error:
        _print_steps([*steps, "recipient"], error)
        return 1
    finally:
        smtp.close(client)
    _print_steps([*steps, "recipient"], None)
    print(f"the server accepted the message for {args.to}; check that it arrived")
    return 0


def _print_steps(steps: list[str], error) -> None:
    for step in steps:
        if error is not None and (step == error.step or (error.step in ("sender", "data") and step == "recipient")):
            print(f"  {step:<10} FAILED  {error.message}")
            return
        print(f"  {step:<10} ok")


def mail(args) -> int:
    """The outbox: what waits or was refused (--pending), or send one again (--retry ID); or
    every kind of mail, rendered as samples (--samples DIR)."""
    if args.samples is not None:
        from daemon.notify.samples import write_samples

        written = write_samples(args.samples)
        print(f"{len(written)} files written to {args.samples}")
        return 0
    config, store = _load(args, read_only=args.retry is None)
    if args.retry is not None:
        with store.transaction(label="mail") as tx:
            mail = tx.outbox.retry_now(args.retry)
        if mail is None:
            raise SystemExit(f"dropd mail: no unsent message {args.retry} (`dropd mail --pending` lists them)")
        print(f"message {mail.id} to {mail.recipient} is queued again; the running daemon sends it within seconds")
        return 0
    unsent = []
    if store:
        with store.reading() as tx:
            unsent = tx.outbox.unsent()
    if args.json:
        fields = (
            "id",
            "kind",
            "status",
            "run_id",
            "recipient",
            "subject",
            "attempts",
            "next_attempt",
            "last_error",
            "created",
        )
        print(json.dumps([{name: getattr(mail, name) for name in fields} for mail in unsent], indent=2))
        return 0
    zone = zoneinfo.ZoneInfo(config.daemon.timezone)
    rows = [
        [mail.id, mail.status, mail.kind, mail.recipient, mail.attempts,
         _local_time(mail.next_attempt, zone) if mail.status == "pending" else "-", mail.last_error or "", mail.subject]
        for mail in unsent
    ]  # fmt: skip
    if rows:
        _print_table(["id", "status", "kind", "to", "attempts", "next attempt", "last error", "subject"], rows)
    print(f"{len(unsent)} message{'s' if len(unsent) != 1 else ''} waiting or failed")
    return 0


def test_connection(args) -> int:
    """Reach an export feed's destination step by step; exit 1 naming the step that failed."""
    # Imported here: paramiko comes with them, 26 MiB and 65 ms no other command needs.
    from daemon.exports import connection_check
    from daemon.exports.destinations import destination_for

    config = _load_config(args)
    partner, feed = _find_feed(config, args.feed)
    if feed.direction != "export":
        raise SystemExit(f"dropd test-connection: {feed.name} is an import feed; it has no destination")
    destination = destination_for(feed, config.daemon.drop_root, partner)
    print(f"checking {feed.name}'s destination {destination.where}")
    error = connection_check.check(destination)
    for step in connection_check.steps_of(destination):
        if error is not None and step == error.step:
            print(f"  {step:<10} FAILED  {error.message}")
            return 1
        print(f"  {step:<10} ok")
    return 0
