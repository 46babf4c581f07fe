#!/usr/bin/env bash
# Runs the whole test suite on any machine: installs the system tools the tests drive
# (when run as root; otherwise names what is missing), the Python packages, then ruff
# (lint and format check) and pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
for pair in lftp:lftp rclone:rclone sftp:openssh-client ssh-keygen:openssh-client /usr/sbin/sshd:openssh-server /usr/sbin/vsftpd:vsftpd curl:curl openssl:openssl systemd-analyze:systemd unshare:util-linux systemd-nspawn:systemd-container; do
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
exec python3 -m pytest "$@"
