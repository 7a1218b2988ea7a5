"""The package's layout (docs/architecture.md): the shared core imports nothing from a stage subpackage.

Imports are read from the source with ``ast`` (also those inside functions), so a lazy import counts too.
"""

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "prompt_distill"
STAGES = {"labeling", "training", "evaluation", "benchmark", "student"}
CORE_MODULES = ["task.py", "data.py", "models.py", "cli_help.py", "duplicates.py", "student_framing.py"]


def core_files() -> list[Path]:
    return [PACKAGE / name for name in CORE_MODULES] + sorted((PACKAGE / "engines").glob("*.py"))


def imported_modules(path: Path, source: str | None = None) -> list[tuple[int, str]]:
    """Every module ``path`` imports, as a dotted name inside or outside prompt_distill, with its line."""
    package = ["prompt_distill", *path.relative_to(PACKAGE).parent.parts]
    found = []
    for node in ast.walk(ast.parse(path.read_text() if source is None else source, str(path))):
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
