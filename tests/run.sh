#!/usr/bin/env bash
# Runs the test suite on any machine: installs the system tools the tests drive (when run
# as root; otherwise names what is missing) and the Python packages, runs the static checks
# (ruff lint and format, mypy --strict on the store and the feed kinds, radon, vulture),
# then pytest.
#
#   bash tests/run.sh            everything: the tests in parallel (pytest-xdist), then the
#                                `serial` ones (they time a partner while a crowd attacks) alone
#   bash tests/run.sh --quick    the inner loop: static checks and the tests not marked `slow`
#                                or `systemd` (no daemon subprocess, no real server), in parallel
#
# Other arguments go to pytest (both passes).
set -euo pipefail
cd "$(dirname "$0")/.."

quick=false
if [ "${1:-}" = "--quick" ]; then
  quick=true
  shift
fi

missing=()
for pair in lftp:lftp rclone:rclone sftp:openssh-client ssh-keygen:openssh-client /usr/sbin/sshd:openssh-server /usr/sbin/vsftpd:vsftpd curl:curl openssl:openssl systemd-analyze:systemd unshare:util-linux systemd-nspawn:systemd-container /usr/bin/chromium:chromium gpg:gnupg gpgconf:gnupg /usr/sbin/haproxy:haproxy; do
  command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair##*:}")
done
compgen -G '/usr/lib/postgresql/*/bin/initdb' >/dev/null || missing+=(postgresql)
/usr/bin/python3 -c 'import ensurepip' 2>/dev/null || missing+=(python3-venv)  # the systemd test installs with it
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
  else
    echo "tests/run.sh: missing system packages: ${missing[*]} (install them, or run as root)" >&2
    exit 1
  fi
fi
python3 -m pip install -q --disable-pip-version-check -e '.[test]'

python3 -m ruff check --quiet .
python3 -m ruff format --check --quiet .
# The store and the feed kinds are the contracts new work lands on: typed, strictly.
python3 -m mypy --strict --follow-imports=silent --no-error-summary daemon/store handlers
# No function so tangled that radon grades it E or F.
tangled=$(python3 -m radon cc --min E daemon handlers)
if [ -n "$tangled" ]; then
  printf 'tests/run.sh: functions radon grades E or F (split them):\n%s\n' "$tangled" >&2
  exit 1
fi
# No dead code; .ci/vulture_whitelist.py names who calls each framework hook.
python3 -m vulture daemon handlers .ci/vulture_whitelist.py

workers=$(( $(nproc) < 4 ? 4 : $(nproc) ))
if $quick; then
  exec python3 -m pytest -n "$workers" -m "not slow and not systemd" "$@"
fi
status=0
python3 -m pytest -n "$workers" -m "not serial" "$@" || status=$?
python3 -m pytest -m serial "$@" || status=$?
exit $status
