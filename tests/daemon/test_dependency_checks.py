"""Every private part of a dependency that dropd relies on is still there, as it expects; and a
changed one stops the start with a sentence naming the library, its version and the change."""

import pytest

from daemon import dependency_checks
from daemon.dependency_checks import PRIVATES, Private, unmet


@pytest.mark.parametrize("private", PRIVATES, ids=[private.where for private in PRIVATES])
def test_each_private_relied_on_is_as_expected(private):
    assert private.problem() is None


def test_a_changed_private_is_named_with_the_library_version_and_the_pin(monkeypatch):
    changed = (
        Private("paramiko", "paramiko.sftp_server:SFTPServer._gone"),
        Private("paramiko", "paramiko.sftp_server:SFTPServer._send_status", ("self", "code"), why="statuses"),
        Private("paramiko", "paramiko.transport:Transport.__init__", sets=("_vanished",)),
    )
    monkeypatch.setattr(dependency_checks, "PRIVATES", changed)
    problems = unmet()
    version = __import__("importlib.metadata").metadata.version("paramiko")
    assert problems[0] == (
        f"paramiko {version}: paramiko.sftp_server:SFTPServer._gone is gone; install paramiko~=5.1 (what this dropd "
        f"is made for) or a dropd that supports paramiko {version}"
    )
    assert (
        "_send_status now takes (self, request_number, code, desc), not (self, code) (dropd relies on it: statuses)"
        in problems[1]
    )
    assert "Transport.__init__ no longer sets _vanished" in problems[2]
