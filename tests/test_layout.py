"""The package's layout (docs/architecture.md): the shared core imports nothing from a stage subpackage, and no
module imports itself through others (no import cycle).

Imports are read from the source with ``ast`` (also those inside functions), so a lazy import counts too; an import
under ``if TYPE_CHECKING:`` is for annotations only and does not count.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prompt_distill"
STAGES = {"labeling", "training", "evaluation", "benchmark", "student"}
CORE_MODULES = ["task.py", "data.py", "models.py", "cli_help.py", "cli.py", "errors.py", "gpus.py", "preflight.py",
                "duplicates.py", "student_framing.py"]


def core_files() -> list[Path]:
    return [PACKAGE / name for name in CORE_MODULES] + sorted((PACKAGE / "engines").glob("*.py"))


def _is_type_checking(node: ast.AST) -> bool:
    test = getattr(node, "test", None)
    return isinstance(node, ast.If) and (
        (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING")
        or (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"))


def _nodes(tree: ast.AST):
    """Every node but those under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if _is_type_checking(child):
            continue
        yield child
        yield from _nodes(child)


def imported_modules(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports, as a dotted name inside or outside prompt_distill, with its line."""
    package = ["prompt_distill", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in _nodes(ast.parse(path.read_text() if source is None else source, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join(base + ([node.module] if node.module else []))
            if node.module:
                found.append((node.lineno, module))
            else:  # ``from . import x``: x is a module of that package
                found += [(node.lineno, f"{module}.{alias.name}") for alias in node.names]
    return found


def test_every_core_module_exists():
    assert all(path.is_file() for path in core_files()), [str(p) for p in core_files() if not p.is_file()]
    subpackages = {path.parent.name for path in PACKAGE.glob("*/__init__.py")}
    assert subpackages - {"engines"} == STAGES


def test_no_core_module_imports_a_stage():
    upward = []
    for path in core_files():
        for line, module in imported_modules(path):
            parts = module.split(".")
            if parts[0] == "prompt_distill" and len(parts) > 1 and parts[1] in STAGES:
                upward.append(f"{path.relative_to(PACKAGE.parent)}:{line}: imports {module}")
    assert not upward, "\n".join(upward)


def test_the_check_sees_relative_and_lazy_imports():
    # A lazy relative import of a stage inside engines/ resolves to the stage (so the check above can fail).
    source = "def f():\n    from ..training.examples import load_examples\n    from .. import evaluation\n"
    found = imported_modules(PACKAGE / "engines" / "base.py", source)
    assert found == [(2, "prompt_distill.training.examples"), (3, "prompt_distill.evaluation")]


def module_name(path: Path) -> str:
    parts = ["prompt_distill", *path.relative_to(PACKAGE).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_module(dotted: str, known: set[str]) -> str | None:
    """The package module an import names (``from .engines import make_engine`` names prompt_distill.engines)."""
    while dotted and dotted not in known:
        dotted = dotted.rpartition(".")[0]
    return dotted or None


def import_graph() -> dict[str, dict[str, int]]:
    """module -> {module it imports: line}, inside prompt_distill."""
    files = sorted(PACKAGE.rglob("*.py"))
    known = {module_name(path) for path in files}
    graph = {}
    for path in files:
        edges = {}
        for line, dotted in imported_modules(path):
            target = project_module(dotted, known)
            if target and target != module_name(path):
                edges.setdefault(target, line)
        graph[module_name(path)] = edges
    return graph


def cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, {}):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_no_import_cycle_inside_the_package():
    graph = import_graph()
    described = []
    for component in cycles(graph):
        edges = [f"{a} -> {b} (line {graph[a][b]})" for a in component for b in graph[a] if b in component]
        described.append("; ".join(edges))
    assert not described, "import cycles:\n" + "\n".join(described)


def test_the_cycle_check_sees_a_cycle_and_ignores_type_checking_imports():
    assert cycles({"a": {"b": 1}, "b": {"c": 1}, "c": {"a": 1}, "d": {"a": 1}}) == [["a", "b", "c"]]
    source = "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .task import Task\nfrom .errors import DataError\n"
    assert imported_modules(PACKAGE / "data.py", source) == [(1, "typing"), (4, "prompt_distill.errors")]
