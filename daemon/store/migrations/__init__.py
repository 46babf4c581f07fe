"""Numbered schema migrations, one folder per backend: `<backend>/NNNN_what.sql`.

A store records the number of the last migration applied. One newer than this code knows is
refused (a newer dropd wrote it); a read-only open refuses an older one rather than change it.
"""

from collections.abc import Iterator
from importlib import resources

from daemon.store.records import SchemaError


class Migrations:
    def __init__(self, backend: str):
        folder = resources.files(__package__) / backend
        files = sorted((entry for entry in folder.iterdir() if entry.name.endswith(".sql")), key=lambda e: e.name)
        self._scripts = [entry.read_text(encoding="utf-8") for entry in files]
        numbers = [int(entry.name.split("_", 1)[0]) for entry in files]
        if numbers != list(range(1, len(numbers) + 1)):
            raise SchemaError(f"{backend} migrations are not numbered 1..{len(numbers)}: {numbers}")

    @property
    def latest(self) -> int:
        return len(self._scripts)

    def after(self, version: int) -> Iterator[tuple[int, list[str]]]:
        """(number, statements) of every migration after `version`, in order."""
        for number in range(version + 1, self.latest + 1):
            script = "\n".join(line for line in self._scripts[number - 1].splitlines() if not line.startswith("--"))
            yield number, [statement for statement in script.split(";") if statement.strip()]

    def check(self, version: int, read_only: bool, where: str) -> None:
        if version > self.latest:
            raise SchemaError(
                f"{where}: schema version {version} is newer than this dropd knows ({self.latest}); "
                "upgrade dropd or point state_dir elsewhere"
            )
        if read_only and version < self.latest:
            raise SchemaError(
                f"{where}: schema version {version} is older than this dropd needs ({self.latest}); "
                "start the daemon once (it upgrades the store) and try again"
            )
