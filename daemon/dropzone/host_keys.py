"""SSH host keys for the SFTP server: loaded from disk, generated on first start if missing."""

import os
from pathlib import Path

import paramiko
import structlog
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519, rsa

log = structlog.get_logger("dropd.host_keys")


def _generate(path: Path) -> None:
    if "rsa" in path.name:
        key = rsa.generate_private_key(public_exponent=65537, key_size=3072)
    else:
        key = ed25519.Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(pem)
    log.info("host_key.generated", path=str(path), type="rsa" if "rsa" in path.name else "ed25519")


def load_host_keys(paths: tuple[Path, ...]) -> list[paramiko.PKey]:
    keys = []
    for path in paths:
        if not path.exists():
            _generate(path)
        try:
            keys.append(paramiko.PKey.from_path(path))
        except (paramiko.SSHException, OSError, ValueError) as exc:
            raise RuntimeError(f"cannot load SSH host key {path}: {exc}") from None
    return keys
