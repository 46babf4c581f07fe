"""Several instances sharing one PostgreSQL store and one drop root (three real daemons on
free loopback ports): each file imported exactly once, each window once, a run taken over
after `kill -9`, and one budget of failed logins for all of them."""

import datetime
import json
import random
import signal
import socket
import time

import paramiko
import pytest

from daemon.scheduler import FeedScheduler, claim_slot, has_claims
from daemon.store.postgres import PostgresStore
from tests.helpers import CONTACTS_HEADER, DropdProcess, students_feed


@pytest.fixture
def cluster(tmp_path, password_hash, postgresql):
    """Three daemons, "a", "b" and "c", configured alike; started by the test."""
    url = postgresql.database()
    shared_drop = tmp_path / "drop"
    nodes = []
    for name in "abc":
        node = DropdProcess(tmp_path / name, password_hash)
        node.drop_root = shared_drop
        node.settings["daemon"].update(
            drop_root=str(shared_drop), store=url, store_password_file=str(postgresql.password_file),
            instance=name, lease="3s", quiet_period="1s", rescan="2s",
        )  # fmt: skip
        nodes.append(node)
    yield nodes
    for node in nodes:
        node.stop()


def roster(first: int, count: int, quoted: bool = False) -> bytes:
    """Contacts `first` to `first + count`; `quoted` names go the slow way (csv module, a row at
    a time), so that an import of a few thousand takes long enough to be cut short."""
    q = '"' if quoted else ""
    return (
        CONTACTS_HEADER
        + "\n"
        + "".join(
            f"S{n},{q}First{n}{q},Last{n},+1202{234 + n // 10000}{n % 10000:04d},,,,\n"
            for n in range(first, first + count)
        )
    ).encode()


def test_files_uploaded_to_any_instance_are_imported_exactly_once(cluster):
    for node in cluster:
        node.add_feed_partner("northfield", [students_feed(files="all")])
        node.start()
    sessions = [node.paramiko_sftp("northfield") for node in cluster]
    rng = random.Random(7)
    try:
        for _, sftp in sessions:
            try:
                sftp.mkdir("/imports")
            except OSError:
                pass  # made by another instance's session
        for number in range(300):
            _, sftp = rng.choice(sessions)
            with sftp.open(f"/imports/StudentData_{number:03d}.csv", "wb") as handle:
                handle.write(roster(number, 1))
    finally:
        for transport, _ in sessions:
            transport.close()
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        contacts = cluster[0].contacts("northfield")
        if len(contacts) == 300:
            break
        time.sleep(0.5)
    assert len(contacts) == 300
    time.sleep(3)  # late duplicates would show by now
    runs = json.loads(cluster[1].cli("runs", "--json", "--limit", "5000").stdout)
    imported = [run for run in runs if run["status"] == "success"]
    assert sorted(run["file"] for run in imported) == [f"StudentData_{n:03d}.csv" for n in range(300)]
    assert {run["instance"] for run in imported} == {"a", "b", "c"}, "the work was shared"
    assert not [run for run in runs if run["status"] == "failed"]
    assert "on a" in cluster[2].cli("runs", "--limit", "5000").stdout or "on b" in cluster[2].cli("runs").stdout


def test_a_run_of_an_instance_killed_mid_import_is_taken_over(cluster, tmp_path):
    for node in cluster:
        node.add_feed_partner("northfield", [students_feed(schedule=[])])
        node.start()
    a = cluster[0]
    landing = a.home("northfield") / "imports"
    landing.mkdir(parents=True, exist_ok=True)
    (landing / "StudentData_big.csv").write_bytes(roster(0, 20_000, quoted=True))
    a.wait_for("file.arrived")
    a.cli("run-now", "students", "--timeout", "0.1", check=False)
    a.wait_for("run.started", feed="students")
    time.sleep(0.5)  # into the import
    a.process.send_signal(signal.SIGKILL)
    a.process.wait(10)
    assert not a.find("run.finished"), "the import ended before the kill: nothing to take over"
    killed_at = time.monotonic()
    b, c = cluster[1], cluster[2]
    while not (b.find("run.taken_over") or c.find("run.taken_over")) and time.monotonic() - killed_at < 60:
        time.sleep(0.1)
    taken_after = time.monotonic() - killed_at
    assert taken_after < 20, f"taken over {taken_after:.1f} s after the kill; the lease is 3 s"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        runs = json.loads(b.cli("runs", "--json").stdout)
        if any(run["status"] == "success" for run in runs):
            break
        time.sleep(0.5)
    [done] = [run for run in runs if run["status"] == "success"]
    [interrupted] = [run for run in runs if run["status"] == "failed"]
    assert interrupted["instance"] == "a" and interrupted["reason"].startswith("interrupted")
    assert done["instance"] in ("b", "c") and done["trigger"] == "recovery" and done["rows_applied"] == 20_000
    assert len(b.contacts("northfield")) == 20_000
    taken = b.find("run.taken_over") + c.find("run.taken_over")
    assert len(taken) == 1 and taken[0]["instance"] == "a"


def test_guesses_spread_over_the_instances_meet_one_budget(cluster):
    for node in cluster:
        node.settings["security"] = {"max_failures": 5, "window": "10m", "ban": "30m"}
        node.add_partner("northfield")
        node.start()

    def guess(node) -> str:
        sock = socket.create_connection(("127.0.0.1", node.sftp_port), timeout=10, source_address=("127.0.0.9", 0))
        transport = paramiko.Transport(sock)
        try:
            transport.connect(username="northfield", password="wrong guess")
        except paramiko.AuthenticationException:
            return "refused"
        except (paramiko.SSHException, EOFError, OSError):
            return "closed"
        finally:
            transport.close()
        return "accepted"

    answers = [guess(cluster[number % 3]) for number in range(5)]
    assert answers == ["refused"] * 5
    for node in cluster:
        assert guess(node) == "closed", "banned on every instance"
        assert "127.0.0.9" in node.cli("bans").stdout


def test_scheduled_times_run_once_each_across_three_schedulers(postgresql):
    url = postgresql.database()
    stores = [PostgresStore(url, postgresql.password_file) for _ in range(3)]
    blocks = ("00-03", "03-06", "06-09", "09-12", "12-15", "15-18", "18-21", "21-24")
    partner = type("Partner", (), {"runs": staticmethod(lambda feed: True)})()
    exports = type("Feed", (), {"name": "conversations", "direction": "export", "schedule": blocks})()
    imports = type("Feed", (), {"name": "students", "direction": "import",
                                "schedule": ("overnight", "morning", "every 6h", "cron 15 6 * * *")})()  # fmt: skip
    config = type("Config", (), {})()
    config.daemon = type("Daemon", (), {"timezone": "America/New_York"})()
    config.feeds = lambda: [(partner, exports), (partner, imports)]

    clock = [datetime.datetime(2026, 11, 23, 5, 0, tzinfo=datetime.UTC)]  # midnight in New York
    requested = []
    schedulers = [
        FeedScheduler(
            lambda: config,
            lambda feed, key, store=store: claim_slot(store, feed, key),
            lambda feed, trigger: requested.append((feed, trigger, clock[0])),
            lambda feed, pattern, store=store: has_claims(store, feed, pattern),
            clock=lambda: clock[0],
        )  # fmt: skip
        for store in stores
    ]
    end = clock[0] + datetime.timedelta(days=2)
    while clock[0] < end:
        for scheduler in random.sample(schedulers, 3):
            scheduler.tick()
        clock[0] += datetime.timedelta(minutes=5)
    # Two days: 8 blocks, 2 windows, 4 six-hour times, 1 cron time a day; midnight's "every 6h"
    # at the first tick had passed before the entry was seen (it starts from 06:00).
    assert len(requested) == 2 * (8 + 2 + 4 + 1) - 1
    assert len({(feed, trigger, moment) for feed, trigger, moment in requested}) == len(requested)
    for store in stores:
        store.close()


def test_two_instances_senders_deliver_each_message_once(postgresql, tmp_path):
    import threading
    from email.message import EmailMessage
    from email.policy import SMTP

    from daemon.notify.sender import MailSender
    from daemon.notify.smtp import SmtpServer
    from tests.helpers import SmtpSink

    sink = SmtpSink(tmp_path / "smtp").start()
    url = postgresql.database()
    stores = [PostgresStore(url, postgresql.password_file) for _ in range(2)]
    try:
        with stores[0].transaction() as tx:
            for number in range(30):
                message = EmailMessage()
                message["Subject"], message["Message-ID"] = f"number {number}", f"<n{number}@test>"
                message.set_content("hello")
                tx.outbox.add(
                    "alert",
                    f"<n{number}@test>",
                    None,
                    ["ops@example.org"],
                    f"number {number}",
                    message.as_bytes(policy=SMTP),
                )
        server = SmtpServer("127.0.0.1", sink.port, "none", "", None, 5.0, None)
        senders = [MailSender(store, lambda: server, lambda: "dropd@example.org", lambda: 1.0) for store in stores]
        threads = [threading.Thread(target=sender.deliver_due) for sender in senders]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        subjects = sorted(message["Subject"] for message in sink.wait_for(30))
        time.sleep(1)
        assert subjects == sorted(f"number {n}" for n in range(30)) and len(sink.messages()) == 30
    finally:
        for store in stores:
            store.close()
        sink.stop()
