"""The partner jail: turns a path a client sent into a real path inside the partner home.

Every path from a client passes through `Jail.resolve`. Clients may say `..`, absolute
paths, or names with NUL bytes; symlinks may point anywhere. The result is always the home
or something below it, or `JailError`.
"""

import errno
import os
import posixpath
from pathlib import Path

NAME_MAX = 255
PATH_MAX = 4096


class JailError(PermissionError):
    """The path would leave the jail, or is not a path a file system can hold."""

    def __init__(self, message: str):
        super().__init__(errno.EACCES, message)


class Jail:
    def __init__(self, home: Path):
        self.home = Path(os.path.realpath(home))

    def virtual(self, path: str) -> str:
        """Normalise a client path to an absolute virtual path ("/" is the home)."""
        if "\x00" in path:
            raise JailError("path contains a NUL byte")
        if len(path.encode("utf-8", "surrogateescape")) > PATH_MAX:
            raise JailError("path is too long")
        normal = posixpath.normpath("/" + path)
        if normal.startswith("//"):
            normal = "/" + normal.lstrip("/")
        for part in normal.split("/"):
            if len(part.encode("utf-8", "surrogateescape")) > NAME_MAX:
                raise JailError("file name is too long")
        return normal

    def resolve(self, path: str) -> Path:
        """The real path for a client path; symlinks anywhere on it must stay inside the home."""
        virtual = self.virtual(path)
        real = self.home / virtual.lstrip("/") if virtual != "/" else self.home
        resolved = Path(os.path.realpath(real))
        if resolved != self.home and self.home not in resolved.parents:
            raise JailError("path leads outside the partner home")
        return real

    def to_virtual(self, real: Path) -> str:
        relative = Path(real).relative_to(self.home)
        return "/" + relative.as_posix() if str(relative) != "." else "/"
