"""Checksum companions (`list.csv.sha256`, `list.csv.md5`) and ready markers (`list.csv.done`).

A checksum file holds one line as `sha256sum` and `md5sum` write it: the hex digest, two
spaces (or a space and `*`), the data file's name; a bare digest is taken too. With
`checksum_file = "optional"` one that is there when the run starts is checked; `"required"`
makes the data file wait up to `checksum_wait` for it and fails the run
(`checksum-file-missing`) when it never comes. A digest that does not match voids the run
(`checksum-mismatch`) before anything is applied.

`ready_marker = "NAME.done"`: a data file waits (without a deadline) until the marker named
after it is there; the marker is the partner's word that the upload is complete.
"""

import hashlib
import os
import re
import time
from pathlib import Path

from daemon.feeds.count_files import CompanionDecision
from daemon.feeds.csv_source import LandedFile, UnsafeFile
from handlers.base import FileRejected

ALGORITHMS = {".sha256": "sha256", ".md5": "md5"}
SUFFIXES = tuple(ALGORITHMS)
LINE = re.compile(r"^\s*([0-9a-fA-F]+)(?:\s+\*?(.+?))?\s*$")


def is_checksum_file(name: str) -> bool:
    return name.endswith(SUFFIXES)


def present_checksum_file(data: Path) -> Path | None:
    for suffix in SUFFIXES:
        companion = data.with_name(data.name + suffix)
        try:
            if companion.is_file():
                return companion
        except OSError:  # a name past the file system's limit has no companion
            return None
    return None


def decide(feed, data: Path, clock=time.time) -> CompanionDecision:
    """Which checksum file to verify `data` against, or how long to wait for one."""
    if feed.checksum_file in (None, "off"):
        return CompanionDecision(None)
    companion = present_checksum_file(data)
    if companion is not None or feed.checksum_file == "optional":
        return CompanionDecision(companion)
    waited = clock() - data.stat().st_mtime
    if waited < feed.checksum_wait:
        return CompanionDecision(None, wait=feed.checksum_wait - waited)
    return CompanionDecision(None, missing=True)


def expected_digest(path: Path, data_name: str) -> tuple[str, str]:
    """(algorithm, hex digest) the checksum file states for `data_name`; FileRejected
    (checksum-mismatch) when it does not hold a line for it."""
    algorithm = ALGORITHMS[next(suffix for suffix in SUFFIXES if path.name.endswith(suffix))]
    try:
        with LandedFile(path) as landed:
            raw = os.pread(landed.fd, 4096, 0)
    except UnsafeFile as exc:
        raise FileRejected("checksum-mismatch", f"{path.name} cannot be read: {exc}") from None
    text = raw.decode("utf-8-sig", "replace")
    length = hashlib.new(algorithm).digest_size * 2
    for line in text.splitlines():
        match = LINE.match(line)
        if not match or len(match.group(1)) != length:
            continue
        named = match.group(2)
        if named is None or named.lstrip("./") == data_name or os.path.basename(named) == data_name:
            return algorithm, match.group(1).lower()
    raise FileRejected(
        "checksum-mismatch",
        f"{path.name} holds no {algorithm} line for {data_name} (write it as `{algorithm}sum` prints it: "
        f"the {length}-digit hex digest, two spaces, the file name)",
    )


def verify(checksum_file: Path, landed: LandedFile, sha256: str) -> str:
    """Check the landed file as uploaded against its checksum file (`sha256`: the digest of
    what was read, computed when it was inspected; a decrypted file's companion is of its
    encrypted bytes); the algorithm checked, or FileRejected (checksum-mismatch)."""
    algorithm, expected = expected_digest(checksum_file, landed.path.name)
    uploaded = getattr(landed, "uploaded_fd", None)
    if uploaded is not None:
        actual = _digest(uploaded, algorithm)
    else:
        actual = sha256 if algorithm == "sha256" else _digest(landed.fd, algorithm)
    if actual != expected:
        raise FileRejected(
            "checksum-mismatch",
            f"{checksum_file.name} says {algorithm} {expected}, the file has {actual}: it changed or was cut "
            "on the way; send both again",
        )
    return algorithm


def _digest(fd: int, algorithm: str) -> str:
    digest, offset = hashlib.new(algorithm), 0
    while chunk := os.pread(fd, 1 << 20, offset):
        digest.update(chunk)
        offset += len(chunk)
    return digest.hexdigest()


def marker_for(feed, data: Path) -> Path | None:
    """The ready marker `data` waits for, or None when the feed has none."""
    if not feed.ready_marker:
        return None
    return data.with_name(feed.ready_marker.replace("NAME", data.name))


def is_marker(feed, name: str) -> bool:
    if not feed.ready_marker:
        return False
    before, _, after = feed.ready_marker.partition("NAME")
    return name.startswith(before) and name.endswith(after) and len(name) > len(before) + len(after)


def data_name_of(feed, name: str) -> str:
    """The data file a checksum file or marker names (`list.csv.sha256` -> `list.csv`)."""
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    before, _, after = feed.ready_marker.partition("NAME")
    return name[len(before) : len(name) - len(after)]


def is_companion(feed, name: str) -> bool:
    """A checksum file or ready marker of the feed, never its data."""
    return is_checksum_file(name) or is_marker(feed, name)
