"""`dropd test-smtp` against a real SMTP server: a test message arrives, and each failing
step (dns, tcp, tls, auth, recipient) is named."""

import pytest

from tests.helpers import SmtpSink, free_port


@pytest.fixture
def secured(tmp_path):
    sink = SmtpSink(tmp_path / "smtp", security="starttls", login=("dropd", "s3cret"), refuse={"gone@example.org"})
    yield sink.start()
    sink.stop()


def run_test_smtp(dropd, sink, *args, **smtp):
    dropd.settings["smtp"] = sink.settings(**smtp)
    dropd.write_config()
    return dropd.cli("test-smtp", "--to", *args, check=False)


def test_a_test_message_arrives_through_starttls_and_auth(dropd, secured):
    result = run_test_smtp(dropd, secured, "someone@example.org")
    assert result.returncode == 0, result.stdout + result.stderr
    for step in ("dns", "tcp", "tls", "auth", "recipient"):
        assert f"  {step:<10} ok" in result.stdout
    [message] = secured.wait_for(1)
    assert message["Subject"] == "[dropd] test message" and message["X-RcptTo"] == "someone@example.org"


@pytest.mark.parametrize(
    "smtp, address, step, says",
    [
        ({"host": "no-such-host.invalid"}, "someone@example.org", "dns", "cannot resolve no-such-host.invalid"),
        ({"port": "closed"}, "someone@example.org", "tcp", "Connection refused"),
        ({"ca_file": ""}, "someone@example.org", "tls", "CERTIFICATE_VERIFY_FAILED"),
        ({"wrong_password": True}, "someone@example.org", "auth", "login as 'dropd' refused: 535"),
        ({}, "gone@example.org", "recipient", "550 5.1.1 no such mailbox here"),
    ],
)
def test_each_failing_step_is_named(dropd, secured, tmp_path, smtp, address, step, says):
    if smtp.pop("port", None):
        smtp["port"] = free_port()
    if smtp.pop("wrong_password", None):
        (tmp_path / "wrong-password").write_text("not it\n")
        smtp["password_file"] = str(tmp_path / "wrong-password")
    result = run_test_smtp(dropd, secured, address, **smtp)
    assert result.returncode == 1
    failed = [line for line in result.stdout.splitlines() if "FAILED" in line]
    assert len(failed) == 1 and failed[0].split()[0] == step and says in failed[0], result.stdout
    assert secured.messages() == []
