"""The package layout holds: dependencies point one way between the role packages, no module
imports itself round a cycle (imports inside functions count), the runtime an archive ships
imports nothing outside itself, and the command line and ops/ run without torch."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "afdserve"

# Which afdserve packages each one may import (besides itself and the root package, which holds
# only __version__). The runtime set first: what an archive ships.
RUNTIME = {"imaging", "models", "serving", "handlers"}
ALLOWED = {
    "imaging": set(),
    "models": set(),
    "serving": {"imaging", "models"},
    "handlers": {"serving"},
    "util": set(),
    "data": {"imaging"},
    "packaging": {"models", "serving", "util"},
    "evaluation": {"data", "imaging", "models", "serving"},
    "ops": {"packaging", "evaluation", "util"},
    "train": {"data", "imaging", "models", "serving", "evaluation", "util"},
    "experiments": {"data", "evaluation", "imaging", "ops", "packaging", "serving"},
    "demo": {"data", "imaging", "ops"},  # a client of the inference API: no models, no serving code
    "cli": set(),  # every command's module is imported by name, when it runs
}
# Packages whose import must not load torch (checked in a subprocess below), and the modules of
# the others a torch-free command imports.
TORCH_FREE = ["afdserve.cli", "afdserve.ops.server", "afdserve.ops.management", "afdserve.ops.client",
              "afdserve.evaluation.gate", "afdserve.packaging.manifest", "afdserve.serving.settings",
              "afdserve.data.folders", "afdserve.data.jpeg", "afdserve.data.splits", "afdserve.util.files",
              "afdserve.demo.compare", "afdserve.demo.app"]


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(p): p for p in sorted(PACKAGE_DIR.rglob("*.py"))}


def imported_modules(name: str) -> set[str]:
    """The afdserve modules ``name`` imports anywhere in its source (functions included)."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base else []))
            # "from afdserve.x import y" imports the module afdserve.x.y when there is one.
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:
                target = target.rpartition(".")[0]
            if target.startswith("afdserve") and target != name:
                found.add(target)
    return found


GRAPH = {name: imported_modules(name) for name in MODULES}


def role(module: str) -> str | None:
    """The package a module belongs to (None for the root package)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else None


def test_every_package_is_declared_with_a_docstring():
    packages = {role(m) for m in MODULES} - {None}
    assert packages == set(ALLOWED), "declare new packages (and what they may import) in ALLOWED"
    for package in packages - {"cli"}:
        init = PACKAGE_DIR / package / "__init__.py"
        doc = ast.get_docstring(ast.parse(init.read_text()))
        assert doc and "import" in doc.lower(), f"{init}: say what the package holds and what it may import"


def test_imports_point_down_the_layers():
    wrong = []
    for module, targets in GRAPH.items():
        mine = role(module)
        for target in targets:
            theirs = role(target)
            if theirs is None or theirs == mine:
                continue
            if mine is None or theirs not in ALLOWED[mine]:
                wrong.append(f"{module} imports {target}")
    assert not wrong, "\n".join(wrong)


def test_the_declared_layers_have_no_cycle():
    done = set()

    def visit(package, path):
        assert package not in path, "layer cycle: " + " -> ".join(path + [package])
        if package in done:
            return
        for below in ALLOWED[package]:
            visit(below, path + [package])
        done.add(package)

    for package in ALLOWED:
        visit(package, [])


def test_no_module_import_cycle():
    """Tarjan's strongly connected components over every import, those in functions included."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def connect(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in GRAPH[v]:
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    sys.setrecursionlimit(max(sys.getrecursionlimit(), 10_000))
    for v in GRAPH:
        if v not in index:
            connect(v)
    assert not cycles, f"import cycles: {cycles}"


def test_the_runtime_imports_nothing_outside_what_archives_ship():
    from afdserve.packaging.archive import SERVED_PACKAGE_PARTS

    shipped = {part for part in SERVED_PACKAGE_PARTS if not part.endswith(".py")}
    # Handlers are copied into the archive on their own (torch-model-archiver --handler).
    assert shipped == RUNTIME - {"handlers"}
    reached, todo = set(), [m for m in MODULES if role(m) in RUNTIME]
    while todo:
        module = todo.pop()
        if module not in reached:
            reached.add(module)
            todo.extend(GRAPH[module])
    outside = sorted(m for m in reached if role(m) is not None and role(m) not in RUNTIME)
    assert not outside, f"the runtime reaches {outside}, which no archive carries"


def loads_torch(code: str) -> bool:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys; print('torch' in sys.modules)"],
                         capture_output=True, text=True, timeout=120, cwd=PACKAGE_DIR.parent)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip().splitlines()[-1] == "True"


@pytest.mark.parametrize("argv", [["--help"], ["ab", "--help"], ["promote", "--help"], ["serve", "--help"],
                                  ["demo", "--help"]])
def test_command_line_help_does_not_load_torch(argv):
    code = f"from afdserve.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit:\n    pass"
    assert not loads_torch(code)


def test_torch_free_modules():
    assert not loads_torch("\n".join(f"import {m}" for m in TORCH_FREE))


def test_command_table_helps_match_the_modules():
    import argparse
    import importlib

    from afdserve.cli import COMMANDS

    for name, (module, help_text) in COMMANDS.items():
        sub = argparse.ArgumentParser().add_subparsers()
        importlib.import_module(module).add_commands(sub)
        helps = {action.dest: action.help for action in sub._choices_actions}
        assert helps.get(name) == help_text, f"{name}: cli.COMMANDS says {help_text!r}, {module} {helps.get(name)!r}"
