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


ARCHITECTURE = ROOT / "docs" / "architecture.md"


def source_modules() -> set[str]:
    """Every module of the two import packages, as a path from the repository root."""
    return {
        path.relative_to(ROOT).as_posix()
        for package in ("daemon", "handlers")
        for path in (ROOT / package).rglob("*.py")
    }


NEW_IN_EXAMPLES = {"handlers/orders.py", "daemon/store/mysql.py"}
"""Modules the "Where to add" examples tell a contributor to create."""


def named_in_architecture() -> set[str]:
    return set(re.findall(r"((?:daemon|handlers)/[a-z_/]+\.py)", ARCHITECTURE.read_text())) - NEW_IN_EXAMPLES


def test_every_module_the_architecture_names_exists_and_imports():
    import importlib

    named = named_in_architecture()
    assert len(named) > 80
    assert sorted(named - source_modules()) == []
    for path in sorted(named):
        module = path.removesuffix(".py").removesuffix("/__init__").replace("/", ".")
        importlib.import_module(module)


def test_every_module_is_in_the_architecture():
    assert sorted(source_modules() - named_in_architecture()) == []


def architecture_layers() -> dict[str, int]:
    """The layer table of docs/architecture.md: each module or package (`daemon/feeds/`) and
    its layer number."""
    block = ARCHITECTURE.read_text().split("## Layers", 1)[1].split("```")[1]
    layers, current = {}, None
    for line in block.splitlines():
        number = re.match(r"\s*(\d+)\s", line)
        if number:
            current = int(number.group(1))
        for unit in re.findall(r"(?:daemon|handlers)/[a-z_/]*(?:\.py)?", line):
            layers[unit] = current
    return layers


def layer_of(path: str, layers: dict[str, int]) -> int:
    candidates = [unit for unit in layers if path == unit or (unit.endswith("/") and path.startswith(unit))]
    assert candidates, f"{path} has no layer in docs/architecture.md"
    return layers[max(candidates, key=len)]


def runtime_imports(tree: ast.Module) -> list[str]:
    """The dropd modules a module imports when it runs (not those under `if TYPE_CHECKING:`)."""
    type_only = {
        id(node)
        for branch in ast.walk(tree)
        if isinstance(branch, ast.If) and ast.unparse(branch.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING")
        for statement in branch.body
        for node in ast.walk(statement)
    }
    found = []
    for node in ast.walk(tree):
        if id(node) in type_only:
            continue
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found += [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names]
    return [name for name in found if name.split(".")[0] in ("daemon", "handlers")]


def module_path(name: str) -> str | None:
    """`daemon.feeds.runs` as `daemon/feeds/runs.py` (a package as its `__init__.py`); None
    for a name that is not a module (a class imported from one)."""
    base = ROOT / name.replace(".", "/")
    if base.with_suffix(".py").is_file():
        return base.with_suffix(".py").relative_to(ROOT).as_posix()
    if (base / "__init__.py").is_file():
        return (base / "__init__.py").relative_to(ROOT).as_posix()
    return None


def test_no_module_imports_from_a_layer_above_its_own():
    layers = architecture_layers()
    assert layers["daemon/cli.py"] == 8 and layers["daemon/store/"] == 1
    upward = []
    for path in sorted(source_modules()):
        own = layer_of(path, layers)
        for name in runtime_imports(ast.parse((ROOT / path).read_text())):
            target = module_path(name)
            if target is not None and layer_of(target, layers) > own:
                upward.append(f"{path} (layer {own}) imports {name} (layer {layer_of(target, layers)})")
    assert upward == []


def test_every_short_module_name_in_the_architecture_is_under_daemon():
    """The path of a file names modules relative to `daemon/` (`feeds/runs.py`, `runner.py`),
    or from the root (`handlers/base.py`)."""
    text = ARCHITECTURE.read_text().split("## The path of one file", 1)[1].split("## Where to add", 1)[0]
    short = set(re.findall(r"`((?:[a-z_]+/)?[a-z_]+\.py)`", text))
    assert len(short) > 20
    assert sorted(name for name in short if not any((base / name).is_file() for base in (ROOT, ROOT / "daemon"))) == []
