"""Every word a mail says, rendered from the templates in `daemon/notify/templates/` (Jinja2).

Python code decides *what* a mail says (which run, which counts, which audience) and hands
plain values to a template; the template decides *how* it reads. Text templates render as
they are (`.txt`); HTML ones escape every value (`.html`). A value a template names but is
not given is an error, never an empty string. Subjects are one-line templates whose
whitespace is folded, so a template can be laid out for reading.
"""

import functools
import re

import jinja2

from daemon.text import printable


def number(value: int | None) -> str:
    """1234567 as "1,234,567"; None as "0"."""
    return f"{value or 0:,}"


def rows_list(numbers: list[int], total: int) -> str:
    """Row numbers as a reader scans them: "rows 3, 7" or "row 3", "…" when there are more."""
    listed = ", ".join(str(n) for n in numbers)
    more = ", …" if total > len(numbers) else ""
    return f"{'row' if total == 1 else 'rows'} {listed}{more}"


def plural(count: int | None, one: str, many: str | None = None) -> str:
    """ "1 row", "2 rows"."""
    count = count or 0
    return f"{count:,} {one if count == 1 else (many or one + 's')}"


@functools.cache
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("daemon.notify", "templates"),
        autoescape=jinja2.select_autoescape(enabled_extensions=("html",), default_for_string=False),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        number=number,
        plural=plural,
        rows_list=rows_list,
        printable=printable,
        format_label=lambda text, width: text.ljust(width),
    )
    return env


def render(template: str, **values) -> str:
    """The template `template` (a file name under templates/) with `values`."""
    return environment().get_template(template).render(**values)


def pairs(template: str, **values) -> list[tuple[str, str]]:
    """A template of `label<TAB>value` lines, as (label, value) pairs (blank lines skipped)."""
    found = []
    for text in render(template, **values).splitlines():
        if text.strip():
            label, _, value = text.partition("\t")
            found.append((label, value))
    return found


def line(template: str, **values) -> str:
    """A one-line template (a subject): its whitespace folded to single spaces."""
    return re.sub(r"\s+", " ", render(template, **values)).strip()
