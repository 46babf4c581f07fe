"""`dropd run-now` says what the run does while it goes (a push retried after 1 s, then 2 s,
sat silent for the whole wait), and Ctrl-C leaves the run to finish in the daemon."""

import signal
import subprocess
import sys

from tests.helpers import CONTACTS_HEADER, conversations_feed, free_port, messages_feed, students_feed


def start_with_unreachable_destination(dropd, retry="1s"):
    password = dropd.root / "push-password"
    password.write_text("secret\n")
    destination = {
        "protocol": "sftp", "host": "127.0.0.1", "port": free_port(), "username": "dropd", "directory": "/in",
        "host_key": "SHA256:" + "A" * 43, "password_file": str(password), "timeout": "5s", "retry": retry,
    }  # fmt: skip
    dropd.add_feed_partner(
        "northfield", [students_feed(), messages_feed(), conversations_feed(destination=destination, schedule=[])]
    )
    dropd.start()
    dropd.upload(
        "northfield", "/imports/StudentData_1.csv", f"{CONTACTS_HEADER}\nS1,Ada,Lovelace,202-555-0143,,,,\n".encode()
    )
    dropd.wait_for_runs("students")
    rows = "".join(f"S1,web,2026-11-20T10:00:{n:02d}Z,hello {n},,,,,,,,m{n}\n" for n in range(3))
    header = "contact_id,channel,timestamp,incoming,outgoing,outgoing_source,campaign_id,campaign_name,script_id,script_name,media,message_id"
    dropd.upload("northfield", "/log/messages_1.csv", (header + "\n" + rows).encode())
    dropd.wait_for_runs("log")


def test_run_now_says_each_step_and_each_retry_as_it_goes(dropd):
    start_with_unreachable_destination(dropd)
    result = dropd.cli("run-now", "conversations", check=False)
    assert result.returncode == 1
    said = [line.split("  ", 1)[1] for line in result.stderr.splitlines()]
    assert said[0] == "conversations: started (run-now)"
    assert said[1].startswith("conversations: run #") and said[1].endswith(": writing the export file")
    assert said[2].startswith("conversations: delivering 3 rows (") and "sftp://dropd@127.0.0.1:" in said[2]
    assert said[3].startswith("conversations: try 1 failed at tcp: cannot connect to 127.0.0.1:")
    assert said[3].endswith("; next try in 1 s (try 2 of 3)")
    assert said[4].startswith("conversations: try 2 failed at tcp:") and said[4].endswith(
        "; next try in 2 s (try 3 of 3)"
    )
    assert len(said) == 5
    assert "failed" in result.stdout and "delivery-failed: tcp" in result.stdout


def test_ctrl_c_leaves_the_run_to_the_daemon_and_says_so(dropd):
    start_with_unreachable_destination(dropd, retry="5s")  # 15 s of retries: Ctrl-C lands inside them
    client = subprocess.Popen(
        [sys.executable, "-m", "daemon.cli", "run-now", "conversations", "-c", str(dropd.config_file)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # As from a terminal: a test run started in the background inherits SIGINT ignored,
        # and Python then installs no KeyboardInterrupt for it.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )  # fmt: skip
    dropd.wait_for("export.retry", feed="conversations")
    client.send_signal(signal.SIGINT)
    _, stderr = client.communicate(timeout=30)
    assert client.returncode == 130, stderr
    assert stderr.strip().splitlines()[-1] == (
        "dropd run-now: stopped waiting; the run of conversations goes on in the daemon "
        "(`dropd runs --feed conversations` shows how it ends)"
    )
    [run] = dropd.wait_for_runs("conversations", timeout=60)
    assert run["status"] == "failed" and run["reason"].startswith("delivery-failed: tcp")
    dropd.wait_for("control.client_left", feed="conversations")
