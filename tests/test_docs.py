"""The repository's documentation stays true to the code."""

import ast
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def logged_events() -> set[str]:
    """Every event name the daemon logs with a literal name."""
    return set(logged_levels())


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
    return set(re.findall(r"((?:daemon|handlers)/[a-z0-9_/]+\.py)", ARCHITECTURE.read_text())) - NEW_IN_EXAMPLES


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
        for unit in re.findall(r"(?:daemon|handlers)/[a-z0-9_/]*(?:\.py)?", line):
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


def logged_levels() -> dict[str, set[str]]:
    """Every literal event name the daemon logs, with the levels it logs it at."""
    levels: dict[str, set[str]] = {}
    for path in [*(ROOT / "daemon").rglob("*.py"), *(ROOT / "handlers").glob("*.py")]:
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
                level = "error" if node.func.attr == "exception" else node.func.attr
                levels.setdefault(node.args[0].value, set()).add(level)
    return levels


def test_every_event_is_documented_at_the_levels_it_is_logged_at():
    documented = dict(
        re.findall(r"^\| `([a-z_]+\.[a-z_.]+)` \| ([^|]*) \|", (ROOT / "docs" / "logs.md").read_text(), re.M)
    )
    wrong = sorted(
        f"{event}: logged at {level}, documented as {documented[event].strip()!r}"
        for event, levels in logged_levels().items()
        for level in levels
        if event in documented and level not in documented[event]
    )
    assert wrong == []


REASON_MODULES = (
    "daemon/feeds/runs.py",
    "daemon/feeds/csv_source.py",
    "daemon/exports/runs.py",
    "daemon/store/repositories.py",
)
"""Where run reasons (`code: sentence`) are made."""
CODE = r"[a-z][a-zA-Z]*(?:-[a-zA-Z]+)*"


def error_codes_in_code() -> set[str]:
    """The codes rows are rejected or reported with, files fail with, and run reasons start with."""
    codes = set()
    for path in [*(ROOT / "daemon").rglob("*.py"), *(ROOT / "handlers").glob("*.py")]:
        reasons = path.relative_to(ROOT).as_posix() in REASON_MODULES
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call):
                name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", None)
                arguments = [a.value for a in node.args if isinstance(a, ast.Constant) and isinstance(a.value, str)]
                if name in ("reject", "partial", "FileRejected", "RowRejected", "OpenPgpFailed") and arguments:
                    codes.add(arguments[0])
                elif reasons or name == "write":
                    codes.update(a for a in arguments if re.fullmatch(r"[a-z][a-zA-Z]*(?:-[a-zA-Z]+)+", a))
            head = node.values[0] if isinstance(node, ast.JoinedStr) and node.values else node
            if reasons and isinstance(head, ast.Constant) and isinstance(head.value, str):
                found = re.match(rf"({CODE}): ", head.value)
                if found:
                    codes.add(found.group(1))
    return codes


def test_every_error_code_is_in_the_reference_and_every_listed_code_is_made():
    text = (ROOT / "docs" / "errors.md").read_text()
    documented = set(re.findall(rf"^\| `({CODE})[`:]", text, re.M))
    reserved = set(re.findall(rf"^\| `({CODE})` \|[^|]*\| reserved", text, re.M))
    made = error_codes_in_code()
    assert len(made) > 25
    assert sorted(made - documented) == []
    assert sorted(documented - made - reserved - {"encoding"}) == []  # encoding: a note, "file read as ..."


def config_keys() -> list[tuple[str, str, object, object]]:
    """(module, key, its parser, its default) of every key the config readers take."""
    import importlib

    found = []
    for path in [*(ROOT / "daemon" / "config").glob("*.py"), *(ROOT / "handlers").glob("*.py")]:
        module = importlib.import_module(path.relative_to(ROOT).with_suffix("").as_posix().replace("/", "."))
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr == "take"
                and node.args
                and isinstance(node.args[0], ast.Constant)
            ):
                default = node.args[2].value if len(node.args) > 2 and isinstance(node.args[2], ast.Constant) else None
                parser = node.args[1] if len(node.args) > 1 else None
                found.append((module, node.args[0].value, parser, default))
    return found


def test_every_config_key_is_documented_with_the_default_the_code_has():
    """A key's documented default, read with the key's own parser, is the code's default."""
    import tomllib

    text = (ROOT / "docs" / "configuration.md").read_text()
    rows: dict[str, list[str]] = {}
    for key, default in re.findall(r"^\| `([a-z_]+)` \| ([^|]*) \|", text, re.M):
        rows.setdefault(key, []).append(default.strip())
    keys = config_keys()
    assert len(keys) > 80
    missing = sorted({key for _, key, _, _ in keys if f"`{key}`" not in text and f"[{key}]" not in text})
    assert missing == []
    wrong = []
    for module, key, parser, default in keys:
        literals = [
            found.group(1) for cell in rows.get(key, []) if (found := re.fullmatch(r"`([^`]+)`( \(.*\))?", cell))
        ]
        if default is None or parser is None or not literals:
            continue
        parse = eval(ast.unparse(parser), vars(module))  # the key's own parser, as the module names it
        read = []
        for literal in literals:
            try:
                value = tomllib.loads(f"value = {literal}")["value"]
            except tomllib.TOMLDecodeError:
                read.append(literal)
                continue
            try:
                read.append(parse(value))
            except ValueError:
                read.append(value)  # a default the parser does not take from a file ("" = none)
        if default not in read:
            wrong.append(f"{key}: the code's default is {default!r}, docs/configuration.md says {literals}")
    assert wrong == []
