"""`dropd check-config` and `dropd passwd`, run as real commands."""

import subprocess
import sys
import textwrap

import argon2
import pytest

from daemon.config.settings import load_config

GOOD_MAIN = """
[daemon]
state_dir = "state"
drop_root = "drop"
partners_dir = "partners.d"
timezone = "America/New_York"
[sftp]
listen = "127.0.0.1:2222"
host_keys = ["state/key"]
[ftp]
listen = "127.0.0.1:2121"
tls = "off"
"""

GOOD_PARTNER = """
[partner]
name = "northfield"
password_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"
"""


def dropd_command(*args, stdin=None):
    return subprocess.run(
        [sys.executable, "-m", "daemon.cli", *args], capture_output=True, text=True, input=stdin, timeout=60
    )


@pytest.fixture
def config_dir(tmp_path):
    (tmp_path / "partners.d").mkdir()
    return tmp_path


def write(config_dir, main=GOOD_MAIN, partners=None):
    (config_dir / "dropd.toml").write_text(textwrap.dedent(main))
    for name, text in (partners if partners is not None else {"northfield": GOOD_PARTNER}).items():
        (config_dir / "partners.d" / f"{name}.toml").write_text(textwrap.dedent(text))
    return config_dir / "dropd.toml"


def test_good_config_passes(config_dir):
    result = dropd_command("check-config", "-c", str(write(config_dir)))
    assert result.returncode == 0, result.stderr
    assert "OK (1 partners, 0 feeds)" in result.stdout


def test_shipped_example_config_passes():
    result = dropd_command("check-config", "-c", "etc/dropd.toml")
    assert result.returncode == 0, result.stderr


BROKEN = {
    "not toml": (GOOD_MAIN + "\n[daemon\n", None, "dropd.toml: is not valid TOML"),
    "missing daemon": ("[sftp]\nlisten='127.0.0.1:1'\nhost_keys=['k']\n", None, "dropd.toml: daemon: is required"),
    "unknown key": (GOOD_MAIN.replace("[sftp]", "[sftp]\nlisen = 'x'"), None, "dropd.toml: sftp.lisen: unknown key"),
    "bad duration": (
        GOOD_MAIN + "\n[security]\nwindow = '10 minutes'\n",
        None,
        "security.window: '10 minutes' is not a duration",
    ),
    "bad timezone": (
        GOOD_MAIN.replace("America/New_York", "Mars/Olympus"),
        None,
        "daemon.timezone: 'Mars/Olympus' is not a known time zone",
    ),
    "bad listen": (
        GOOD_MAIN.replace("127.0.0.1:2222", "localhost"),
        None,
        "sftp.listen: 'localhost' is not an address",
    ),
    "bad tls": (
        GOOD_MAIN.replace('tls = "off"', 'tls = "maybe"'),
        None,
        "ftp.tls: 'maybe' is not one of: required, off",
    ),
    "tls without cert": (
        GOOD_MAIN.replace('tls = "off"', 'tls = "required"'),
        None,
        'ftp.certfile: is required when tls = "required"',
    ),
    "bad passive range": (
        GOOD_MAIN + 'passive_ports = "60000-50000"\n',
        None,
        "ftp.passive_ports: '60000-50000' must lie within",
    ),
    "bad store": (
        GOOD_MAIN.replace('timezone = "America/New_York"', 'store = "mysql://x"'),
        None,
        'daemon.store: must be "sqlite" or a postgresql:// URL',
    ),
    "same port twice": (
        GOOD_MAIN.replace("127.0.0.1:2121", "127.0.0.1:2222"),
        None,
        "ftp.listen: is the same address as sftp.listen",
    ),
    "missing smtp secret": (
        GOOD_MAIN + '[smtp]\npassword_file = "nope.txt"\n',
        None,
        "smtp.password_file: cannot read secret file",
    ),
    "smtp bad admin": (
        GOOD_MAIN + '[smtp]\nadmin = ["ops at example.org"]\n',
        None,
        "smtp.admin: 'ops at example.org' is not an email address",
    ),
    "smtp auth in clear": (
        GOOD_MAIN + '[smtp]\nsecurity = "none"\nusername = "dropd"\npassword_file = "dropd.toml"\n',
        None,
        "smtp.username: AUTH would send the password in clear text",
    ),
    "smtp username without password": (
        GOOD_MAIN + '[smtp]\nusername = "dropd"\n',
        None,
        "smtp.password_file: is required when username is set",
    ),
    "smtp bad attachment size": (
        GOOD_MAIN + '[smtp]\nmax_attachment = "5 megs"\n',
        None,
        "smtp.max_attachment: '5 megs' is not a size",
    ),
    "smtp bad digest time": (
        GOOD_MAIN + '[smtp]\ndigest_at = "7am"\n',
        None,
        "smtp.digest_at: '7am' is not a time of day",
    ),
    "alerts bad threshold": (
        GOOD_MAIN + '[alerts]\nmin_free = "5"\n',
        None,
        "alerts.min_free: '5' is not a percentage",
    ),
    "notify without smtp": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "f"\nkind = "messages"\npath = "/log"\nprefix = "m"\nnotify = ["a@example.org"]\n'
        },
        "p.toml: feed[f].notify: addresses are set but dropd.toml has no [smtp] section to send through",
    ),
    "metrics bad listen": (
        GOOD_MAIN + '[metrics]\nlisten = "everywhere"\n',
        None,
        "metrics.listen: 'everywhere' is not an address",
    ),
    "export without prefix": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER + '[[feed]]\nname = "out"\nkind = "engagement_export"\n'},
        "p.toml: feed[out].prefix: is required",
    ),
    "destination without credentials": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "out"\nkind = "conversations_export"\nprefix = "conv"\n[feed.destination]\nhost = "h"\nusername = "u"\ndirectory = "/in"\nhost_key = "SHA256:'
            + "A" * 43
            + '"\n'
        },
        "feed[out].destination.password_file: a destination needs password_file or private_key_file",
    ),
    "destination bad host key": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "out"\nkind = "conversations_export"\nprefix = "conv"\n[feed.destination]\nhost = "h"\nusername = "u"\ndirectory = "/in"\nhost_key = "md5:ab"\npassword_file = "dropd.toml"\n'
        },
        "feed[out].destination.host_key: 'md5:ab' is not a host key fingerprint",
    ),
    "ftps destination with a key": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "out"\nkind = "conversations_export"\nprefix = "conv"\n[feed.destination]\nprotocol = "ftps"\nhost = "h"\nusername = "u"\ndirectory = "/in"\nprivate_key_file = "../dropd.toml"\n'
        },
        "feed[out].destination.private_key_file: is for sftp",
    ),
    "partner without credentials": (
        GOOD_MAIN,
        {"p": '[partner]\nname = "bare"\n'},
        "p.toml: partner.password_hash: a partner needs a password_hash, authorized_keys, or both",
    ),
    "partner bad name": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER.replace('"northfield"', '"North Field"')},
        "p.toml: partner.name: 'North Field' is not a usable partner name",
    ),
    "clear-text password": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER.replace("$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g", "hunter2")},
        "partner.password_hash: must be an argon2 hash",
    ),
    "bad key": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER + 'authorized_keys = ["ssh-ed25519 AAAAnotakey"]\n'},
        "partner.authorized_keys: entry 1 is not a usable public key",
    ),
    "bad cidr": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER + 'allow_from = ["203.0.113.7/24"]\n'},
        "partner.allow_from: '203.0.113.7/24' is not a network in CIDR form",
    ),
    "duplicate partner": (
        GOOD_MAIN,
        {"a": GOOD_PARTNER, "b": GOOD_PARTNER},
        "b.toml: partner.name: 'northfield' is also defined in",
    ),
    "relative feed path": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER + '[[feed]]\nname = "f"\nkind = "contacts"\npath = "imports"\nprefix = "S"\n'},
        "p.toml: feed[f].path: 'imports' must be a full path",
    ),
    "bad feed kind": (
        GOOD_MAIN,
        {"p": GOOD_PARTNER + '[[feed]]\nname = "f"\nkind = "pdf"\npath = "/i"\nprefix = "S"\n'},
        "feed[f].kind: 'pdf' is not one of",
    ),
    "bad schedule": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "f"\nkind = "contacts"\npath = "/i"\nprefix = "S"\nschedule = ["midnight"]\n'
        },
        "feed[f].schedule: 'midnight': 'midnight' is not a schedule; write on_arrival",
    ),
    "cron field out of range": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "f"\nkind = "contacts"\npath = "/i"\nprefix = "S"\nschedule = ["cron 61 6 * * *"]\n'
        },
        "feed[f].schedule: 'cron 61 6 * * *': cron minute 61 out of range 0-59",
    ),
    "expect_by on arrival": (
        GOOD_MAIN,
        {
            "p": GOOD_PARTNER
            + '[[feed]]\nname = "f"\nkind = "contacts"\npath = "/i"\nprefix = "S"\nexpect_by = "on_arrival"\n'
        },
        "feed[f].expect_by: is a time, not on_arrival",
    ),
    "web console without staff": (
        GOOD_MAIN + '[web]\nlisten = "127.0.0.1:8080"\n',
        None,
        "web.staff: no one could log in: add a [web.staff.NAME] table",
    ),
    "web staff limited to an unknown partner": (
        GOOD_MAIN + '[web.staff.omar]\npassword_hash = "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$aGFzaGhhc2g"\n'
        'partners = ["northfeld"]\n',
        None,
        "web.staff.omar.partners: 'northfeld' is not a partner in partners_dir",
    ),
    "web staff password not argon2id": (
        GOOD_MAIN + '[web.staff.maria]\npassword_hash = "secret"\n',
        None,
        "web.staff.maria.password_hash: is not an argon2id hash; make one with `dropd passwd`",
    ),
    "web base_url not a web address": (
        GOOD_MAIN + '[web]\nbase_url = "dropd.example.org"\n',
        None,
        "web.base_url: 'dropd.example.org' is not a web address",
    ),
    "web certfile without keyfile": (
        GOOD_MAIN + '[web]\ncertfile = "cert.pem"\n',
        None,
        "web.keyfile: certfile and keyfile go together",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_config_names_file_key_and_problem(config_dir, case):
    main, partners, expected = BROKEN[case]
    result = dropd_command("check-config", "-c", str(write(config_dir, main, partners)))
    assert result.returncode == 1
    assert expected in result.stderr, result.stderr
    assert str(config_dir) in result.stderr


def test_every_error_is_reported_at_once(config_dir):
    main = GOOD_MAIN.replace("America/New_York", "Nowhere").replace('tls = "off"', 'tls = "sometimes"')
    partners = {"p": '[partner]\nname = "Bad Name"\ncolour = "blue"\n'}
    result = dropd_command("check-config", "-c", str(write(config_dir, main, partners)))
    assert result.returncode == 1
    for fragment in ("daemon.timezone", "ftp.tls", "partner.name", "partner.colour: unknown key"):
        assert fragment in result.stderr
    assert "4 error(s)" in result.stderr


def test_run_refuses_a_broken_config(config_dir):
    result = dropd_command("run", "-c", str(write(config_dir, GOOD_MAIN.replace("2222", "x"))))
    assert result.returncode == 1 and "sftp.listen" in result.stderr


def test_relative_paths_are_taken_from_the_config_folder(config_dir):
    config = load_config(write(config_dir))
    assert config.daemon.state_dir == config_dir / "state"
    assert config.sftp.host_keys == (config_dir / "state" / "key",)


def test_passwd_prints_an_argon2id_hash_of_stdin():
    result = dropd_command("passwd", stdin="s3cret-enough\n")
    assert result.returncode == 0
    hashed = result.stdout.strip()
    assert hashed.startswith("$argon2id$")
    assert argon2.PasswordHasher().verify(hashed, "s3cret-enough")
    assert "s3cret-enough" not in result.stdout


def test_passwd_refuses_a_short_password():
    result = dropd_command("passwd", stdin="short\n")
    assert result.returncode == 1 and "at least 8 characters" in result.stderr


def test_security_limits_are_checked(config_dir):
    main = (
        GOOD_MAIN
        + """
[security]
login_grace_time = "0s"
max_unauthenticated = 10
max_unauthenticated_per_address = 11
max_sessions_per_address = 0
max_auth_attempts = "3"
"""
    )
    file = write(config_dir, main=main)
    result = dropd_command("check-config", "-c", str(file))
    assert result.returncode == 1
    for key in ("security.login_grace_time", "security.max_sessions_per_address", "security.max_auth_attempts",
                "security.max_unauthenticated_per_address"):  # fmt: skip
        assert f": {key}: " in result.stderr, result.stderr


def test_a_password_rotation_takes_two_hashes_and_no_more(config_dir):
    two = GOOD_PARTNER.replace('password_hash = "', 'password_hash = ["').replace(
        'aGFzaGhhc2g"', 'aGFzaGhhc2g", "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ$bmV3bmV3bmV3"]'
    )
    assert (
        load_config(write(config_dir, partners={"northfield": two}))
        .partners["northfield"]
        .password_hashes[1]
        .endswith("bmV3bmV3bmV3")
    )
    three = two.replace('"]', '", "$argon2id$x"]')
    result = dropd_command("check-config", "-c", str(write(config_dir, partners={"northfield": three})))
    assert result.returncode == 1 and "partner.password_hash: must be an argon2 hash" in result.stderr, result.stderr


def test_a_misspelt_key_gets_a_suggestion_and_a_file_error_has_no_empty_key(config_dir):
    main = GOOD_MAIN.replace("[sftp]", "[sftp]\nlisten_adress = 'x'").replace(
        'timezone = "America/New_York"', 'timezon = "UTC"'
    )
    result = dropd_command("check-config", "-c", str(write(config_dir, main=main)))
    assert "daemon.timezon: unknown key (did you mean 'timezone'?)" in result.stderr, result.stderr
    assert "sftp.listen_adress: unknown key" in result.stderr
    broken = write(config_dir, main="[daemon\n")
    result = dropd_command("check-config", "-c", str(broken))
    assert f"{broken}: is not valid TOML" in result.stderr and ": : " not in result.stderr


def export_with_key(key_file: str, passphrase_file: str | None = None) -> str:
    passphrase = f'passphrase_file = "{passphrase_file}"\n' if passphrase_file else ""
    return (
        GOOD_PARTNER
        + '[[feed]]\nname = "out"\nkind = "conversations_export"\nprefix = "conv"\n[feed.destination]\nhost = "h"\n'
        + f'username = "u"\ndirectory = "/in"\nhost_key = "SHA256:{"A" * 43}"\nprivate_key_file = "{key_file}"\n{passphrase}'
    )


def test_check_config_loads_each_push_key_with_its_passphrase(config_dir):
    """An encrypted key without passphrase_file passed check-config and crashed every run of the
    feed with a TypeError."""
    key = config_dir / "push_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "open sesame", "-f", str(key)], check=True)
    (config_dir / "right").write_text("open sesame\n")
    (config_dir / "wrong").write_text("close sesame\n")
    missing = dropd_command("check-config", "-c", str(write(config_dir, partners={"p": export_with_key(str(key))})))
    assert missing.returncode == 1
    assert f"p.toml: feed[out].destination.private_key_file: {key} is encrypted: set passphrase_file" in missing.stderr
    wrong = dropd_command(
        "check-config",
        "-c",
        str(write(config_dir, partners={"p": export_with_key(str(key), str(config_dir / "wrong"))})),
    )
    assert wrong.returncode == 1 and "is passphrase_file the right passphrase?" in wrong.stderr, wrong.stderr
    right = dropd_command(
        "check-config",
        "-c",
        str(write(config_dir, partners={"p": export_with_key(str(key), str(config_dir / "right"))})),
    )
    assert right.returncode == 0, right.stderr
    started = dropd_command("run", "-c", str(write(config_dir, partners={"p": export_with_key(str(key))})))
    assert started.returncode == 1 and "is encrypted: set passphrase_file" in started.stderr


@pytest.mark.parametrize(
    "url",
    ["postgresql://dropd:hunter2@127.0.0.1/dropd", "postgresql://dropd@127.0.0.1/dropd?password=hunter2",
     "postgresql://dropd@127.0.0.1/dropd?sslmode=require&PASSWORD=hunter2"],
)  # fmt: skip
def test_a_password_in_the_store_url_is_refused_and_never_printed(config_dir, url):
    main = GOOD_MAIN.replace('timezone = "America/New_York"', f'timezone = "America/New_York"\nstore = "{url}"')
    result = dropd_command("check-config", "-c", str(write(config_dir, main)))
    assert result.returncode == 1
    assert "daemon.store: the URL holds a password: put it in a file named by store_password_file" in result.stderr
    assert "hunter2" not in result.stderr + result.stdout
