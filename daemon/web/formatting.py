"""How the console's pages write times, ages, sizes and counts (Jinja2 filters)."""

from daemon.clock import local_text
from daemon.dropzone.quota import format_bytes


def ago(seconds: float | None) -> str:
    """An age as a person says it: "40 s", "12 min", "5 h", "3 days"."""
    if seconds is None:
        return "never"
    for limit, unit, size in ((120, "s", 1), (7200, "min", 60), (172800, "h", 3600)):
        if seconds < limit:
            return f"{int(seconds // size)} {unit}"
    return f"{int(seconds // 86400)} days"


def number(value: int | None) -> str:
    return "-" if value is None else f"{value:,}"


def size(value: int | None) -> str:
    return "-" if value is None else format_bytes(value)


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return f"{seconds:.1f} s" if seconds < 120 else f"{seconds / 60:.1f} min"


FILTERS = {"local": local_text, "ago": ago, "number": number, "size": size, "duration": duration}
