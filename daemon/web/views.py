"""What each console page shows, as plain data: a page and its `/api/` twin render one dict.

Every function takes the staff member asking and shows only the partners they may see: a
run, partner or feed out of their scope is `NotFound`, exactly as one that does not exist.
All reading goes through the store's query methods (the same `Runs.recent` `dropd runs` uses);
each answer is bounded (a page of at most MAX_PAGE_SIZE runs, ERROR_ROWS error rows).
"""

import csv
import dataclasses
import datetime
import itertools
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from daemon.clock import local_moment, utc_now, utc_stamp
from daemon.config.settings import Config
from daemon.config.web import StaffAccount
from daemon.dropzone.gatekeeper import BanList, LastLogins
from daemon.schedules import next_runs, parse
from daemon.store.records import RunRecord

PAGE_SIZE = 50
MAX_PAGE_SIZE = 200
ERROR_ROWS = 100
"""Rejected rows shown on a run's page; the whole list is its errors.csv."""
CHART_RUNS = 30
FEED_RUNS = 50
CELL_CHARACTERS = 200
"""A cell of a rejected row is cut to this many characters on the page."""
STATUSES = ("success", "failed", "skipped", "running")
SECRET_KEYS = ("password", "passphrase", "private_key", "secret")
SYSTEM_ALERTS = ("certificate", "host-key", "disk", "store")
"""Alert conditions about the daemon itself, which every staff member sees."""


class NotFound(Exception):
    """Nothing by that name or number that this staff member may see."""


class BadRequest(Exception):
    """A filter that cannot be read; the message says which and how to write it."""


@dataclass
class Console:
    """What the pages read: the config in force, the store, the drop zone's memory."""

    config: Callable[[], Config]
    store: object
    logins: LastLogins
    bans: BanList
    quota_used: Callable[[str], int]
    clock: Callable[[], datetime.datetime] = utc_now


def _zone(config: Config) -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(config.daemon.timezone)


def _duration(run: RunRecord) -> float | None:
    if not run.finished:
        return None
    started, finished = (datetime.datetime.fromisoformat(s) for s in (run.started, run.finished))
    return round((finished - started).total_seconds(), 3)


def run_summary(run: RunRecord) -> dict:
    return {
        "id": run.id, "partner": run.partner, "feed": run.feed, "kind": run.kind, "trigger": run.trigger,
        "file": run.file, "size": run.size, "status": run.status, "reason": run.reason,
        "rows_in_file": run.rows_in_file, "rows_applied": run.rows_applied, "rows_rejected": run.rows_rejected,
        "started": run.started, "finished": run.finished, "duration_seconds": _duration(run),
        "instance": run.instance,
    }  # fmt: skip


def _alert_visible(condition: str, staff: StaffAccount, config: Config) -> bool:
    kind, _, subject = condition.partition(":")
    if kind in SYSTEM_ALERTS or not staff.partners:
        return True
    if kind == "quota":
        return staff.sees(subject)
    try:
        partner, _ = config.feed(subject)
    except KeyError:
        return False
    return staff.sees(partner.name)


def dashboard(console: Console, staff: StaffAccount) -> dict:
    """Alerts first, then each feed's last run: failed ones first, then by partner and feed."""
    config = console.config()
    with console.store.reading() as tx:
        last = {run.feed: run for run in tx.runs.last_per_feed()}
        raised = tx.alerts.raised()
    now = console.clock()
    feeds = []
    for partner, feed in config.feeds():
        if not staff.sees(partner.name):
            continue
        run = last.get(feed.name)
        age = (now - datetime.datetime.fromisoformat(run.started)).total_seconds() if run else None
        feeds.append({
            "partner": partner.name, "feed": feed.name, "kind": feed.kind, "direction": feed.direction,
            "enabled": partner.runs(feed), "last_run": run_summary(run) if run else None,
            "age_seconds": round(age) if age is not None else None,
        })  # fmt: skip
    feeds.sort(key=lambda f: (not (f["last_run"] and f["last_run"]["status"] == "failed"), f["partner"], f["feed"]))
    alerts = [
        {"condition": key, "summary": summary, "raised_at": raised_at}
        for key, (summary, raised_at) in sorted(raised.items(), key=lambda item: item[1][1])
        if _alert_visible(key, staff, config)
    ]
    return {"alerts": alerts, "feeds": feeds, "timezone": config.daemon.timezone, "generated": utc_stamp(now)}


@dataclass(frozen=True)
class RunFilter:
    partner: str = ""
    feed: str = ""
    status: str = ""
    since: str = ""
    until: str = ""
    before: int | None = None
    limit: int = PAGE_SIZE

    def query(self, **changes) -> dict[str, str]:
        """The filter as query parameters (empty ones left out), with `changes`."""
        values = {**dataclasses.asdict(self), **changes}
        return {key: str(value) for key, value in values.items() if value not in ("", None, PAGE_SIZE)}


def read_filter(params) -> RunFilter:
    """A `RunFilter` from query parameters; BadRequest names the one that cannot be read."""

    def number(name: str, low: int, high: int) -> int | None:
        raw = params.get(name, "")
        if not raw:
            return None
        if not raw.isdigit() or not low <= int(raw) <= high:
            raise BadRequest(f"{name} must be a whole number from {low} to {high}")
        return int(raw)

    status = params.get("status", "")
    if status and status not in STATUSES:
        raise BadRequest(f"status must be one of: {', '.join(STATUSES)}")
    for name in ("since", "until"):
        value = params.get(name, "")
        try:
            if value:
                local_moment(value, zoneinfo.ZoneInfo("UTC"))
        except ValueError:
            raise BadRequest(f"{name} must be a date (2026-11-27) or a date and time (2026-11-27T06:00)") from None
    return RunFilter(
        partner=params.get("partner", ""), feed=params.get("feed", ""), status=status,
        since=params.get("since", ""), until=params.get("until", ""), before=number("before", 1, 2**62),
        limit=number("limit", 1, MAX_PAGE_SIZE) or PAGE_SIZE,
    )  # fmt: skip


def runs(console: Console, staff: StaffAccount, wanted: RunFilter) -> dict:
    """One page of runs, newest first; `next` is the filter of the page after it (None on the
    last page). Keyset pagination: page 400 costs what page 1 does."""
    config = console.config()
    zone = _zone(config)
    if wanted.partner and not staff.sees(wanted.partner):
        found: list[RunRecord] = []
    else:
        with console.store.reading() as tx:
            found = tx.runs.recent(
                feed=wanted.feed or None, status=wanted.status or None, limit=wanted.limit + 1,
                since=local_moment(wanted.since, zone) if wanted.since else None,
                until=local_moment(wanted.until, zone, day_end=True) if wanted.until else None,
                partner=wanted.partner or None, partners=list(staff.partners) if staff.partners else None,
                before=wanted.before,
            )  # fmt: skip
    page, more = found[: wanted.limit], len(found) > wanted.limit
    return {
        "runs": [run_summary(run) for run in page],
        "filter": wanted.query(),
        "next": wanted.query(before=page[-1].id) if more else None,
        "partners": sorted(name for name in config.partners if staff.sees(name)),
        "statuses": list(STATUSES),
        "timezone": config.daemon.timezone,
    }


def _visible_run(console: Console, staff: StaffAccount, run_id: int) -> RunRecord:
    with console.store.reading() as tx:
        run = tx.runs.find(run_id)
    if run is None or not staff.sees(run.partner):
        raise NotFound(f"no run #{run_id}")
    return run


def run(console: Console, staff: StaffAccount, run_id: int) -> dict:
    """One run: its summary, errors by code, its first rejected rows, and the recap sent."""
    found = _visible_run(console, staff, run_id)
    with console.store.reading() as tx:
        counts = tx.runs.error_counts(run_id, first=5)
        first = tx.runs.first_errors(run_id, ERROR_ROWS)
        mails = tx.outbox.for_run(run_id)
    cells = _error_file_cells(found.error_file, {row for row, *_ in first})
    return {
        "run": {**run_summary(found), "details": found.details, "sha256": found.sha256},
        "error_codes": [{"code": code, "rows": total, "first_rows": rows} for code, total, rows in counts],
        "error_rows": [
            {"row": row, "code": code, "failure_type": failure, "message": message, "cells": cells.get(row, [])}
            for row, code, failure, message in first
        ],
        "error_rows_shown": len(first),
        "has_error_file": bool(found.error_file and Path(found.error_file).is_file()),
        "recap": [
            {
                "recipient": mail.recipient,
                "kind": mail.kind,
                "status": mail.status,
                "queued": mail.created,
                "sent": mail.sent_at,
                "attempts": mail.attempts,
                "last_error": mail.last_error,
            }
            for mail in mails
        ],  # fmt: skip
        "timezone": console.config().daemon.timezone,
    }


def _error_file_cells(path: str | None, rows: set[int]) -> dict[int, list[dict]]:
    """The cells (column, value) of the rows `rows` in the run's error CSV, each cut to
    CELL_CHARACTERS; reading stops after the last wanted row. {} when the file is gone."""
    if not path or not rows:
        return {}
    cells: dict[int, list[dict]] = {}
    try:
        with open(path, encoding="utf-8-sig", newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, [])[4:]
            for record in itertools.islice(reader, 4 * len(rows)):  # a row may have several errors
                number = record[0] if record else ""
                if number.isdigit() and int(number) in rows and int(number) not in cells:
                    cells[int(number)] = [
                        {"column": column, "value": value[:CELL_CHARACTERS]}
                        for column, value in zip(header, record[4:], strict=False)
                    ]
                    if len(cells) == len(rows):
                        break
    except (OSError, csv.Error, UnicodeDecodeError):
        return cells
    return cells


def error_file(console: Console, staff: StaffAccount, run_id: int) -> Path:
    """The run's error CSV, as written (the partner's `<name>.errors.csv` has the same bytes)."""
    found = _visible_run(console, staff, run_id)
    if not found.error_file or not Path(found.error_file).is_file():
        raise NotFound(f"run #{run_id} has no error file (it had no rejected rows, or it was pruned)")
    return Path(found.error_file)


def _partner(console: Console, staff: StaffAccount, name: str):
    partner = console.config().partners.get(name)
    if partner is None or not staff.sees(name):
        raise NotFound(f"no partner named {name!r}")
    return partner


def partners(console: Console, staff: StaffAccount) -> dict:
    config = console.config()
    last = console.logins.last()
    return {
        "partners": [
            {
                "name": name, "enabled": partner.enabled, "feeds": len(partner.feeds),
                "quota": partner.quota, "used": console.quota_used(name), "last_login": last.get(name),
            }
            for name, partner in sorted(config.partners.items())
            if staff.sees(name)
        ],
        "timezone": config.daemon.timezone,
    }  # fmt: skip


def partner(console: Console, staff: StaffAccount, name: str) -> dict:
    """The account, its feeds with their schedules and next runs, and its recent logins with
    the bans of the addresses they came from."""
    found = _partner(console, staff, name)
    config = console.config()
    recent = console.logins.recent(name)
    addresses = {entry["address"] for entry in recent}
    return {
        "partner": {
            "name": name, "enabled": found.enabled, "password": bool(found.password_hashes),
            "keys": [{"type": key.get_name(), "fingerprint": key.fingerprint} for key in found.authorized_keys],
            "allow_from": [str(network) for network in found.allow_from], "quota": found.quota,
            "used": console.quota_used(name), "reply_to": list(found.reply_to),
        },
        "feeds": [_feed_line(config, found, feed, console.clock()) for feed in found.feeds],
        "logins": recent,
        "bans": [
            {"address": ban.address, "until": utc_stamp(datetime.datetime.fromtimestamp(ban.until, datetime.UTC))}
            for ban in console.bans.bans()
            if ban.address in addresses
        ],
        "timezone": config.daemon.timezone,
    }  # fmt: skip


def _feed_line(config: Config, partner, feed, now: datetime.datetime) -> dict:
    entries = [entry for entry in (parse(text, feed.direction) for text in feed.schedule) if entry is not None]
    upcoming = next_runs(entries, now, config.daemon.timezone, feed.name, 1)
    return {
        "name": feed.name, "kind": feed.kind, "direction": feed.direction, "enabled": partner.runs(feed),
        "schedule": list(feed.schedule), "next_run": utc_stamp(min(upcoming)) if upcoming and partner.runs(feed)
        else None, "description": feed.description,
    }  # fmt: skip


def feed(console: Console, staff: StaffAccount, name: str) -> dict:
    """The feed's settings (secrets never shown), its recent runs and a chart of the last
    CHART_RUNS runs' applied and rejected rows."""
    config = console.config()
    try:
        owner, found = config.feed(name)
    except KeyError:
        raise NotFound(f"no feed named {name!r}") from None
    if not staff.sees(owner.name):
        raise NotFound(f"no feed named {name!r}")
    with console.store.reading() as tx:
        history = tx.runs.recent(feed=name, limit=FEED_RUNS)
    settings = {
        field.name: _shown(field.name, getattr(found, field.name))
        for field in dataclasses.fields(found)
        if field.name not in ("name", "options")
    }
    return {
        "feed": _feed_line(config, owner, found, console.clock()) | {"partner": owner.name},
        "settings": settings,
        "options": _shown("options", found.options),
        "runs": [run_summary(one) for one in history],
        "chart": [
            {"id": one.id, "applied": one.rows_applied or 0, "rejected": one.rows_rejected or 0, "status": one.status}
            for one in reversed(history[:CHART_RUNS])
        ],
        "timezone": config.daemon.timezone,
    }


def _shown(key: str, value):
    """A setting as plain data a page can show; a secret's value is only said to be set."""
    if any(word in key for word in SECRET_KEYS):
        return None if value is None else "(set)"
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {field.name: _shown(field.name, getattr(value, field.name)) for field in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): _shown(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        items = [_shown(key, item) for item in value]
        return sorted(items, key=str) if isinstance(value, set | frozenset) else items
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)
