"""Reading secrets named by `*_file` keys: a path, or a systemd credential name.

Secrets never sit inline in configuration. A bare name (no slash) is looked up first under
`$CREDENTIALS_DIRECTORY` (what `LoadCredential=` provides), then beside the config file.
"""

import os
from pathlib import Path


def secret_path(value: str, config_dir: Path) -> Path:
    credentials = os.environ.get("CREDENTIALS_DIRECTORY")
    if credentials and "/" not in value:
        candidate = Path(credentials) / value
        try:
            if candidate.exists():
                return candidate
        except OSError:
            return candidate  # there, but not ours to look at: reading it says why

    path = Path(value)
    return path if path.is_absolute() else config_dir / path


def readable_secret_file(config_dir: Path):
    """A config parser that checks a secret file can be read, and returns its path."""

    def parse(value) -> Path | None:
        if not isinstance(value, str):
            raise ValueError("must be a string naming a file")
        if not value:
            return None
        path = secret_path(value, config_dir)
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise ValueError(f"cannot read secret file {path}: {exc.strerror}") from None
        return path

    return parse
