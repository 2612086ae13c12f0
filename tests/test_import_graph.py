"""The layering as a test: no import cycle among modules or engine's sub-packages (type-only imports count),
engine/ never imports Qt nor ui/app, ui/ never imports app/."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "ui", "app")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")}


def _imports(path: Path, name: str, known: set[str]) -> set[str]:
    """Every module of ours that ``path`` imports, anywhere in the file (lazy and TYPE_CHECKING included)."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        for target in targets:
            while target and target not in known:
                target = target.rpartition(".")[0]
            if target and target != name:
                found.add(target)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    known = set(modules)
    return {name: _imports(path, name, known) for name, path in modules.items()}


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one member (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for succ in graph.get(node, ()):
            if succ not in index:
                visit(succ)
                low[node] = min(low[node], low[succ])
            elif succ in on_stack:
                low[node] = min(low[node], index[succ])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                result.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return result


def _package_of(module: str) -> str:
    """engine's rooms: engine.smtpd.inbound → engine.smtpd; engine.server (top level) → engine."""
    parts = module.split(".")
    if len(parts) >= 3:
        return ".".join(parts[:2])
    return module if module == "engine.server" else "engine"


def test_no_module_import_cycle() -> None:
    assert _cycles(_graph()) == []


def test_no_cycle_between_engine_packages() -> None:
    graph: dict[str, set[str]] = {}
    for module, targets in _graph().items():
        if not module.startswith("engine."):
            continue
        source = _package_of(module)
        graph.setdefault(source, set()).update(
            _package_of(t) for t in targets if t.startswith("engine.") and _package_of(t) != source)
    # engine.server is the master on top; errors, events and counters ("engine") are the leaves.
    assert _cycles(graph) == []
    assert graph.get("engine", set()) == set()


@pytest.mark.parametrize("package", ["engine", "ui"])
def test_layering(package: str) -> None:
    forbidden = {"engine": ("ui", "app", "PySide6", "qasync"), "ui": ("app",)}[package]
    bad = []
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else (
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            bad += [f"{path.relative_to(ROOT)}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert bad == []


def test_only_server_imports_engine_server() -> None:
    """engine.server is the master: nothing inside engine/ imports it."""
    importers = [m for m, targets in _graph().items() if "engine.server" in targets and m.startswith("engine.")]
    assert importers == []
