"""Who may log in, checked through the running daemon with real clients."""

import ftplib
import socket

import paramiko
import pytest

from tests.helpers import PASSWORD, ftps

WRONG = "wrong-password-123"


@pytest.fixture
def running(dropd):
    dropd.settings["security"] = {"max_failures": 3, "window": "10m", "ban": "30m"}
    dropd.add_partner("northfield")
    dropd.add_partner("lakeside", allow_from=["127.0.0.2/32"])
    dropd.add_partner("retired", enabled=False)
    dropd.start()
    return dropd


def sftp_login_fails(dropd, user, password, source="127.0.0.1"):
    with pytest.raises(paramiko.AuthenticationException):
        dropd.paramiko_sftp(user, password, source=source)


def test_wrong_password_and_unknown_user_are_refused_on_both_protocols(running):
    sftp_login_fails(running, "northfield", WRONG)
    sftp_login_fails(running, "nobody", PASSWORD)
    with pytest.raises(ftplib.error_perm, match="530"):
        ftps(running, "northfield", WRONG)
    reasons = [event["reason"] for event in running.find("login.failed")]
    assert reasons == ["wrong password", "unknown user", "wrong password"]
    assert PASSWORD not in running.log_text() and WRONG not in running.log_text()


def test_disabled_partner_is_refused(running):
    sftp_login_fails(running, "retired", PASSWORD)
    assert running.find("login.failed", user="retired", reason="partner is disabled")


def test_allow_from_is_enforced_before_the_password(running):
    sftp_login_fails(running, "lakeside", PASSWORD, source="127.0.0.1")
    assert running.find("login.failed", user="lakeside", reason="address not in the partner's allow_from")
    transport, sftp = running.paramiko_sftp("lakeside", source="127.0.0.2")
    with transport:
        assert sftp.listdir("/") == []


def test_repeated_failures_ban_the_address_on_both_protocols(running):
    for _ in range(3):
        sftp_login_fails(running, "northfield", WRONG, source="127.0.0.2")
    running.wait_for("address.banned", remote="127.0.0.2")
    # The right password no longer helps from the banned address, on either protocol ...
    with pytest.raises((paramiko.SSHException, EOFError, ConnectionError, socket.error)):
        running.paramiko_sftp("northfield", PASSWORD, source="127.0.0.2")
    with pytest.raises(ftplib.error_temp, match="421"):
        ftps(running, "northfield", PASSWORD, source="127.0.0.2")
    assert running.find("connection.refused", remote="127.0.0.2", reason="banned", protocol="sftp")
    # ... while other addresses are unaffected.
    transport, sftp = running.paramiko_sftp("northfield", PASSWORD, source="127.0.0.1")
    transport.close()


def test_key_only_partner_rejects_passwords_and_unknown_keys(dropd, client_key, tmp_path):
    from tests.helpers import ClientKey

    dropd.add_partner("keyonly", password=False, keys=[client_key.public])
    dropd.start()
    sftp_login_fails(dropd, "keyonly", PASSWORD)
    stranger = ClientKey(tmp_path, "stranger")
    with pytest.raises(paramiko.AuthenticationException):
        dropd.paramiko_sftp("keyonly", key=stranger.pkey)
    transport, sftp = dropd.paramiko_sftp("keyonly", key=client_key.pkey)
    transport.close()
    assert len(dropd.find("login.failed", user="keyonly")) == 2
