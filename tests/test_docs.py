"""The repository's documentation stays true to the code."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def logged_events() -> set[str]:
    """Every event name the daemon logs with a literal name."""
    found = set()
    for path in (ROOT / "daemon").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in ("debug", "info", "warning", "error", "exception")
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
                and re.fullmatch(r"[a-z_]+\.[a-z_.]+", node.args[0].value)
            ):
                found.add(node.args[0].value)
    return found


def test_every_logged_event_is_in_the_log_reference():
    documented = set(re.findall(r"`([a-z_]+\.[a-z_.]+)`", (ROOT / "docs" / "logs.md").read_text()))
    assert len(logged_events()) > 50
    assert sorted(logged_events() - documented) == []


def test_every_command_is_in_the_readme():
    from daemon.cli import build_parser

    commands = build_parser()._subparsers._group_actions[0].choices
    readme = (ROOT / "README.md").read_text()
    assert sorted(name for name in commands if f"`dropd {name}" not in readme) == []
