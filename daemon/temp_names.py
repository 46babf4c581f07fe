"""What a file looks like while it is being written, by us or by a partner's client.

One place for the rules the servers, the watcher, the rescan and every writer of files follow:
- our own temporary name, `.dropd-<16 hex>.upload`: an upload in progress, a report or an
  export being copied into a partner's folder; never listed to a partner, never creatable by
  one, never imported;
- clients' temporary names (`*.filepart`, `*.part`, `*.tmp`, `.~*`, ...): a client uploads
  under one and renames it afterwards; such a file is not finished and is not imported;
- the name dropd gives a file it pushes to a partner's own server while it is sent:
  `.<name>.<8 hex>.part`, which watchers there skip as well.
"""

import re
import secrets

OUR_PREFIX = ".dropd-"
OUR_SUFFIX = ".upload"
_OURS = re.compile(r"^\.dropd-[0-9a-f]{16}\.upload$")
# Names that clients use while they upload, before renaming to the final name.
_CLIENTS = re.compile(r"(\.filepart|\.part|\.tmp|\.partial|\.crdownload|~)$", re.IGNORECASE)


def our_temp_name() -> str:
    """A fresh temporary name for a file we write in a folder partners see."""
    return f"{OUR_PREFIX}{secrets.token_hex(8)}{OUR_SUFFIX}"


def is_our_temp_name(name: str) -> bool:
    return bool(_OURS.match(name))


def is_temporary_name(name: str) -> bool:
    """True for names that must never be treated as a finished file: ours and clients'."""
    return is_our_temp_name(name) or bool(_CLIENTS.search(name)) or name.startswith(".~")


def remote_temp_name(name: str) -> str:
    """The name a file pushed to a partner's server has until it is complete there."""
    return f".{name}.{secrets.token_hex(4)}.part"
