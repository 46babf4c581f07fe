"""`dropd mail --samples DIR`: one of every kind of mail, as docs/mails/ shows them. The
samples come from the real templates and code, so when the words change, docs/mails/ must
be written again (`dropd mail --samples docs/mails`) and reviewed."""

import email
import email.policy
import subprocess
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parents[3] / "docs" / "mails"
KINDS = ("recap-partner", "recap-voided-partner", "recap-voided-admin", "recap-export", "digest", "alert", "resolved")


def test_the_samples_in_docs_are_what_the_templates_render_now(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "daemon.cli", "mail", "--samples", str(tmp_path)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    written = sorted(path.name for path in tmp_path.iterdir())
    assert written == sorted(f"{kind}.{ext}" for kind in KINDS for ext in ("eml", "txt"))
    stale = [name for name in written if (tmp_path / name).read_bytes() != (DOCS / name).read_bytes()]
    assert stale == [], "docs/mails/ is stale: run `dropd mail --samples docs/mails` and review the change"


def sample(name: str) -> email.message.EmailMessage:
    return email.message_from_bytes((DOCS / f"{name}.eml").read_bytes(), policy=email.policy.default)


def test_every_mail_is_marked_automatic_and_the_partners_hold_nothing_of_the_server():
    for kind in KINDS:
        assert sample(kind)["Auto-Submitted"] == "auto-generated", kind
    for kind in ("recap-partner", "recap-voided-partner", "recap-export"):
        text = (DOCS / f"{kind}.txt").read_text()
        for admin_only in ("ops@example.org", "/var/lib", "/etc/dropd", "dropd runs", "On the server", "Trigger"):
            assert admin_only not in text, (kind, admin_only)
    assert "import" not in (DOCS / "recap-export.txt").read_text().lower()
    admin = (DOCS / "recap-voided-admin.txt").read_text()
    assert "On the server:\n  dropd runs --feed northfield-students\n" in admin
    assert "Partner file: /etc/dropd/partners.d/northfield.toml\n" in admin


def test_the_resolved_mail_follows_its_alert():
    alert, resolved = sample("alert"), sample("resolved")
    assert resolved["In-Reply-To"] == resolved["References"] == alert["Message-ID"]
