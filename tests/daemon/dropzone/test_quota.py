"""Per-partner quotas, with real clients: an upload past the quota is refused while it is
written, publishes nothing and leaves nothing; `dropd status` shows the use; admin hears of a
partner at 90 % once."""

import ftplib
import io
import json
import os

import pytest

from tests.helpers import ftps

pytestmark = pytest.mark.slow


@pytest.fixture
def limited(dropd, sink):
    dropd.settings["smtp"] = sink.settings(admin=["ops@example.org"])
    dropd.settings["alerts"] = {"interval": "1s"}
    dropd.add_partner("northfield", quota="100KB")
    dropd.add_partner("westbrook")
    dropd.start()
    return dropd


def leftovers(dropd, partner="northfield") -> list[str]:
    return sorted(name for _, _, names in os.walk(dropd.home(partner)) for name in names)


def test_an_upload_past_the_quota_is_refused_over_sftp_and_ftps_and_leaves_nothing(limited, tmp_path):
    transport, sftp = limited.paramiko_sftp("northfield")
    with transport:
        with sftp.open("/first.csv", "wb") as handle:
            handle.write(b"a" * 60_000)
        with (
            pytest.raises(OSError, match="quota exceeded: northfield's folder may hold 100.0 kB"),
            sftp.open("/second.csv", "wb") as handle,
        ):
            handle.write(b"b" * 60_000)
    assert leftovers(limited) == ["first.csv"]
    big = tmp_path / "big.csv"
    big.write_bytes(b"c" * 60_000)
    refused = limited.curl_ftps("/third.csv", "-T", str(big), user="northfield")
    assert refused.returncode == 70 and "Exceeded storage allocation" in refused.stderr, refused.stderr  # 552
    client = ftps(limited)
    try:
        with pytest.raises(ftplib.error_perm, match="^552 quota exceeded: northfield's folder may hold 100.0 kB"):
            client.storbinary("STOR /fifth.csv", io.BytesIO(b"d" * 60_000))
    finally:
        client.quit()
    assert leftovers(limited) == ["first.csv"]
    fits = limited.curl_ftps("/fourth.csv", "-T", str(tmp_path / "big.csv"), user="westbrook")
    assert fits.returncode == 0, "another partner has no quota"
    failed = limited.find("transfer.finished", status="failed", partner="northfield")
    assert len(failed) == 3 and all("quota exceeded" in event["reason"] for event in failed)


def test_status_shows_the_use_and_admin_hears_of_90_percent_once(limited, sink):
    transport, sftp = limited.paramiko_sftp("northfield")
    with transport, sftp.open("/nearly.csv", "wb") as handle:
        handle.write(b"a" * 95_000)
    status = json.loads(limited.cli("status", "--json").stdout)
    partners = {entry["partner"]: entry for entry in status["partners"]}
    northfield = partners["northfield"]
    assert (northfield["used"], northfield["quota"]) == (95_000, 100_000)
    assert (northfield["last_login"]["protocol"], northfield["last_login"]["address"]) == ("sftp", "127.0.0.1")
    assert partners["westbrook"]["quota"] is None and partners["westbrook"]["last_login"] is None
    text = limited.cli("status").stdout
    assert "(sftp from 127.0.0.1); 95.0 kB of its 100.0 kB quota (95%)\n" in text
    assert "  partner westbrook: no login since the daemon started; 0 bytes\n" in text
    [alert] = sink.wait_for(1)
    assert alert["Subject"] == "[dropd] alert: northfield uses 95% of its quota"
    assert "Uploads past it are refused" in alert.get_body(("plain",)).get_content()
    limited.wait_for("alert.raised", condition="quota:northfield")
    assert len(limited.find("alert.raised", condition="quota:northfield")) == 1
    assert ": northfield uses 95% of its quota\n" in limited.cli("status").stdout.split("ALERT since ", 1)[1]
    transport, sftp = limited.paramiko_sftp("northfield")
    with transport:
        sftp.remove("/nearly.csv")
    limited.wait_for("alert.cleared", condition="quota:northfield", timeout=30)
    assert [m["Subject"] for m in sink.wait_for(2)][1] == "[dropd] resolved: northfield uses 95% of its quota"
