"""Mail delivery by the running daemon: a run never waits for mail, and a recap queued while
the SMTP server is down survives a restart and is delivered once the server is back, once."""

import json
import time

from tests.helpers import CONTACTS_HEADER as HEADER
from tests.helpers import SmtpSink, students_feed


def test_a_recap_waits_for_the_server_through_a_restart_and_is_sent_once(dropd, tmp_path):
    sink = SmtpSink(tmp_path / "smtp")  # not started yet: the server is down
    dropd.settings["smtp"] = sink.settings()
    dropd.add_feed_partner("northfield", [students_feed(notify=["registrar@northfield.example"])])
    dropd.start()
    dropd.upload("northfield", "/imports/StudentData_1.csv", f"{HEADER}\n1,Ada,Lovelace,202-555-0143,,,,\n".encode())
    [run] = dropd.wait_for_runs("students")
    assert run["status"] == "success", "a run does not wait for mail"
    dropd.wait_for("mail.retry", step="tcp")
    [pending] = json.loads(dropd.cli("mail", "--pending", "--json").stdout)
    assert pending["status"] == "pending" and pending["run_id"] == run["id"]
    assert pending["last_error"].startswith("tcp: cannot connect") and pending["attempts"] >= 1
    assert json.loads(dropd.cli("status", "--json").stdout)["pending_mail"] == 1

    dropd.stop()
    sink.start()
    try:
        dropd.start()
        [message] = sink.wait_for(1, timeout=60)
        assert message["Subject"] == "[dropd] students: success, 1 imported"
        dropd.wait_for("mail.sent", run_id=run["id"])
        time.sleep(2)  # a second copy would have arrived by now (retry is 1s)
        assert len(sink.messages()) == 1
        assert json.loads(dropd.cli("mail", "--pending", "--json").stdout) == []
    finally:
        sink.stop()
