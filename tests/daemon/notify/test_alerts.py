"""Daemon alerts to admin through a real SMTP server: each condition mailed once when it
starts and once when it clears; the store being down is mailed directly; the daily digest."""

import datetime
import os
import threading
import time
import types
import zoneinfo

from daemon.dropzone.quota import Quotas
from daemon.dropzone.tls_certificates import ensure_self_signed
from daemon.notify.alerts import AlertMonitor, Alerts, extra_recipients
from daemon.notify.mailer import Mailer
from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import InProcessFeeds, students_feed

ZONE = zoneinfo.ZoneInfo("America/New_York")


class Watched:
    """The in-process feeds with the daemon's alert monitor over them."""

    def __init__(self, tmp_path, password_hash, sink, alerts=None, smtp=None):
        self.feeds = InProcessFeeds(tmp_path, password_hash)
        self.feeds.settings["smtp"] = sink.settings(**(smtp or {}))
        self.feeds.settings["alerts"] = {"failed_runs": 2, **(alerts or {})}
        self.feeds.add_feed_partner("northfield", [students_feed()])
        self.feeds.start()
        ensure_self_signed(self.feeds.config.ftp.certfile, self.feeds.config.ftp.keyfile)  # as the daemon's start does
        self.sink = sink
        self.core = types.SimpleNamespace(config=self.feeds.config)
        mailer = Mailer(lambda: self.core.config)
        self.monitor = AlertMonitor(
            lambda: self.core.config,
            self.feeds.store,
            Alerts(
                self.feeds.store,
                mailer.queue_admin,
                mailer.send_to_admin_now,
                lambda: "UTC",
                also=lambda key: extra_recipients(self.core.config, key),
            ),  # as daemon/service.py does
            mailer.queue_digest_if_due,
            Quotas(self.feeds.drop_root).used,
        )

    def reconfigure(self, **alerts) -> None:
        self.feeds.settings["alerts"].update(alerts)
        self.feeds.stop()
        self.feeds.start()
        self.core.config = self.feeds.config

    def check(self) -> list[str]:
        """One check and one delivery pass; the subjects of every message so far."""
        self.monitor.check()
        self.feeds.deliver_mail()
        return [message["Subject"] for message in self.sink.messages()]


def test_a_feed_failing_in_a_row_is_alerted_once_and_cleared_once(tmp_path, password_hash, sink):
    watched = Watched(tmp_path, password_hash, sink)
    bad = "Student ID\n1\n"
    watched.feeds.upload("northfield", "/imports/StudentData_1.csv", bad.encode())
    assert not [s for s in watched.check() if "alert" in s], "one failure is not yet an alert"
    watched.feeds.upload("northfield", "/imports/StudentData_2.csv", (bad + "2\n").encode())
    watched.check()
    watched.check()
    alerts = [s for s in watched.check() if "alert" in s]
    assert alerts == ["[dropd] alert: students failed 2 times in a row"]
    watched.feeds.upload("northfield", "/imports/StudentData_3.csv", f"{HEADER}\n1,A,B,202-555-0143,,,,\n".encode())
    watched.check()
    subjects = watched.check()
    assert [s for s in subjects if "alert" in s or "resolved" in s] == [
        "[dropd] alert: students failed 2 times in a row",
        "[dropd] resolved: students failed 2 times in a row",
    ]
    [alert] = [m for m in sink.messages() if "alert:" in m["Subject"]]
    [resolved] = [m for m in sink.messages() if "resolved:" in m["Subject"]]
    assert alert["X-RcptTo"] == "ops@example.org" and "missing-column" in alert.get_content()
    assert alert["Auto-Submitted"] == resolved["Auto-Submitted"] == "auto-generated"
    assert alert["Message-ID"].startswith("<dropd.alert.") and alert["In-Reply-To"] is None
    assert resolved["In-Reply-To"] == resolved["References"] == alert["Message-ID"], (
        "the resolved mail closes the thread"
    )
    body = resolved.get_content()
    assert body.startswith("Resolved: students failed 2 times in a row.\n\nRaised at ")
    assert ", cleared at " in body


def test_low_disk_an_expiring_certificate_and_a_waiting_file(tmp_path, password_hash, sink):
    watched = Watched(tmp_path, password_hash, sink, alerts={"min_free": "100%", "expiry_warning": "100000d"})
    waiting = watched.feeds.home("northfield") / "imports" / "StudentData_old.csv"
    waiting.parent.mkdir(parents=True)
    waiting.write_text(HEADER + "\n")
    two_days_ago = time.time() - 2 * 86400
    os.utime(waiting, (two_days_ago, two_days_ago))
    subjects = sorted(watched.check())
    assert len([s for s in subjects if s.startswith("[dropd] alert: drop_root is")]) == 1
    assert len([s for s in subjects if s.startswith("[dropd] alert: state_dir is")]) == 1
    assert len([s for s in subjects if s.startswith("[dropd] alert: the FTPS certificate expires")]) == 1
    assert "[dropd] alert: 1 file(s) waiting in students's landing folder" in subjects
    assert len(subjects) == 4
    assert sorted(watched.check()) == subjects, "nothing is sent twice"
    watched.reconfigure(min_free="0%", expiry_warning="14d")
    waiting.unlink()
    resolved = [s for s in watched.check() if s.startswith("[dropd] resolved:")]
    assert len(resolved) == 4


def test_the_store_being_down_is_mailed_directly_once_and_when_it_is_back(tmp_path, password_hash, sink):
    watched = Watched(tmp_path, password_hash, sink)
    down = threading.Event()

    class Failing:
        """The store, or a store that cannot be read while `down` is set."""

        def __init__(self, store):
            self.store = store

        def reading(self):
            if down.is_set():
                raise OSError("disk I/O error")
            return self.store.reading()

        def transaction(self, **kwargs):
            return self.store.transaction(**kwargs)

    watched.monitor._store = Failing(watched.feeds.store)
    down.set()
    watched.monitor.check()
    watched.monitor.check()
    [alert] = sink.wait_for(1)
    assert alert["Subject"] == "[dropd] alert: the store is unavailable"
    assert "The daemon cannot read its store: disk I/O error." in alert.get_content()
    down.clear()
    watched.monitor.check()
    alert, resolved = sorted(sink.wait_for(2), key=lambda m: m["Subject"])
    assert resolved["Subject"] == "[dropd] resolved: the store is unavailable"
    assert resolved["In-Reply-To"] == alert["Message-ID"]


def test_the_daily_digest_is_queued_once_a_day_failures_first(tmp_path, password_hash, sink):
    watched = Watched(tmp_path, password_hash, sink, smtp={"digest_at": "00:00"})
    watched.feeds.upload("northfield", "/imports/StudentData_1.csv", f"{HEADER}\n1,A,B,202-555-0143,,,,\n".encode())
    watched.check()
    watched.check()
    [digest] = [m for m in sink.messages() if "digest" in m["Subject"]]
    assert digest["Subject"].endswith(": 1 run, 0 failed") and digest["X-RcptTo"] == "ops@example.org"
    assert "northfield / students" in digest.get_content() and "success" in digest.get_content()


def test_the_digest_reads_each_run_as_a_sentence_would(tmp_path, password_hash, sink):
    """It said `0 applied, 2 rejectedall-rows-rejected`: counts and reason ran together."""
    watched = Watched(tmp_path, password_hash, sink, smtp={"digest_at": "00:00"})
    rejected = f"{HEADER}\n1,A,B,not a phone,,,,\n2,C,D,no phone,,,,\n"
    watched.feeds.upload("northfield", "/imports/StudentData_1.csv", rejected.encode())
    watched.check()
    [digest] = [m for m in sink.messages() if "digest" in m["Subject"]]
    [line] = [line for line in digest.get_content().splitlines() if "StudentData_1.csv" in line]
    assert line.split()[3:] == ["failed", "StudentData_1.csv", "0", "applied", "(all-rows-rejected)"]
    assert "rejectedall" not in digest.get_content()


def test_a_file_not_received_by_expect_by_is_alerted_once_to_notify_and_admin_and_closed_when_it_comes(
    tmp_path, password_hash, sink
):
    watched = Watched(tmp_path, password_hash, sink)
    feed = students_feed(
        schedule=["overnight"], expect_by="at 07:00 on mon-fri", notify=["registrar@northfield.example"]
    )
    watched.feeds.add_feed_partner("northfield", [feed])
    watched.reconfigure()
    clock = [local(2027, 5, 3, 6, 59)]  # a Monday
    watched.monitor._clock = lambda: clock[0]
    landed(watched, "StudentData_A.csv", local(2027, 4, 29, 12, 0))  # Thursday's, still waiting for its window
    assert watched.check() == [], "a file came after Thursday's deadline: Friday's is met"
    clock[0] = local(2027, 5, 3, 7, 1)
    watched.check()
    assert watched.check() == ["[dropd] alert: no file for students from northfield by 07:00 EDT"] * 2
    assert sorted(m["X-RcptTo"] for m in sink.messages()) == ["ops@example.org", "registrar@northfield.example"]
    body = sink.messages()[0].get_content()
    assert "has arrived since 2027-04-30 07:00 EDT; it was expected by 2027-05-03 07:00 EDT" in body
    landed(watched, "StudentData_B.csv", local(2027, 5, 3, 8, 0))
    clock[0] = local(2027, 5, 3, 8, 1)
    subjects = watched.check()
    assert subjects[2:] == ["[dropd] received: no file for students from northfield by 07:00 EDT"] * 2
    alert = next(m for m in sink.messages() if m["X-RcptTo"] == "registrar@northfield.example")
    received = next(m for m in sink.messages()[2:] if m["X-RcptTo"] == "registrar@northfield.example")
    assert received["In-Reply-To"] == alert["Message-ID"], "the received mail closes the alert's thread"
    assert received.get_content().startswith("Received: no file for students from northfield by 07:00 EDT.")
    clock[0] = local(2027, 5, 4, 7, 30)
    assert len(watched.check()) == 4, "Monday's late file was since Monday's deadline: Tuesday's is met"
    clock[0] = local(2027, 5, 5, 7, 30)
    assert len(watched.check()) == 6, "nothing since Tuesday: Wednesday's is late"
    for day in (8, 9):  # the weekend: no deadline, the alert stands, no more mail
        clock[0] = local(2027, 5, day, 12, 0)
        assert len(watched.check()) == 6


def local(*parts) -> datetime.datetime:
    return datetime.datetime(*parts, tzinfo=ZONE).astimezone(datetime.UTC)


def landed(watched, name: str, at: datetime.datetime) -> None:
    """A file in the feed's landing folder, last written at `at`."""
    path = watched.feeds.home("northfield") / "imports" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"{HEADER}\n1,A,B,202-555-0143,,,,\n")
    os.utime(path, (at.timestamp(), at.timestamp()))
