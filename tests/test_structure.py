"""The code's seams, pinned: no import cycles (also counting imports inside functions); Optuna
only in the engines (and the storage-URL code), MLflow only in tracking; only the CLI prints or
writes to stdout/stderr; no package named like a library at the root; no module over 500 lines
and no function over 80 lines (but for the files named in SIZE_EXEMPT)."""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "search"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, ast.Module]:
    return {_module_name(p): ast.parse(p.read_text(), str(p)) for p in PACKAGE.rglob("*.py")}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST, top_level_only: bool) -> list[tuple[str, int]]:
    """(imported module, line) of every import; with top_level_only, those that run on import
    (module scope, not under TYPE_CHECKING, not inside functions)."""
    found: list[tuple[str, int]] = []

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if top_level_only and isinstance(
                child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
            ):
                continue
            if top_level_only and isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.extend((alias.name, child.lineno) for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module, child.lineno))
                found.extend((f"{child.module}.{a.name}", child.lineno) for a in child.names)
            visit(child)

    visit(tree)
    return found


def _fail_on_a_cycle(graph: dict[str, set[str]], what: str) -> None:
    """Fail naming the first cycle of ``graph`` (module -> the modules it imports), if any."""
    visiting: list[str] = []
    done: set[str] = set()

    def walk(node: str) -> None:
        if node in done:
            return
        if node in visiting:
            cycle = visiting[visiting.index(node) :] + [node]
            pytest.fail(f"{what}: " + " -> ".join(cycle))
        visiting.append(node)
        for dep in sorted(graph[node]):
            walk(dep)
        visiting.pop()
        done.add(node)

    for node in sorted(graph):
        walk(node)


def test_no_import_cycles_among_the_packages_modules() -> None:
    modules = _modules()
    graph: dict[str, set[str]] = {name: set() for name in modules}
    for name, tree in modules.items():
        for imported, _ in _imports(tree, top_level_only=True):
            if imported in modules and imported != name:
                graph[name].add(imported)
        # importing a.b.c runs a/__init__ and a/b/__init__ too
        for dep in list(graph[name]):
            parts = dep.split(".")
            for i in range(1, len(parts)):
                parent = ".".join(parts[:i])
                if parent in modules and parent != name and not name.startswith(parent + "."):
                    graph[name].add(parent)
    _fail_on_a_cycle(graph, "import cycle")


@pytest.mark.parametrize(
    ("library", "allowed"),
    [
        ("optuna", ("search.engines", "search.storage")),
        # The one exception: the pyfunc model file, which travels inside the saved model and is
        # run by MLflow itself (`mlflow models serve`, mlflow.pyfunc.load_model), not by search.
        ("mlflow", ("search.tracking", "search.serving.model", "search.serving.ensemble_model")),
        ("keras_tuner", ("search.engines",)),
    ],
)
def test_libraries_stay_in_their_room(library: str, allowed: tuple[str, ...]) -> None:
    offenders = []
    for name, tree in _modules().items():
        if any(name == room or name.startswith(room + ".") for room in allowed):
            continue
        for imported, line in _imports(tree, top_level_only=False):
            if imported == library or imported.startswith(library + "."):
                offenders.append(f"{name}:{line} imports {imported}")
    assert not offenders, offenders


def test_only_the_cli_prints() -> None:
    offenders = []
    for name, tree in _modules().items():
        if name == "search.cli" or name.startswith("search.cli."):
            continue
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id == "print"
            ):
                offenders.append(f"{name}:{node.lineno}")
    assert not offenders, offenders


def test_no_package_shadows_a_library_at_the_root() -> None:
    for folder in ("mlflow", "data", "spaces"):
        assert not (REPO / folder / "__init__.py").exists(), folder


def test_the_code_that_travels_with_a_served_model_imports_no_search() -> None:
    """search/serving/ is copied into saved MLflow models, where `search` is not installed: it
    imports only numpy, pandas, keras, mlflow (the model file) and itself, relatively."""
    allowed = ("numpy", "pandas", "keras", "mlflow", "search_serving", "search.serving")
    offenders = []
    for path in (PACKAGE / "serving").glob("*.py"):
        for imported, line in _imports(ast.parse(path.read_text()), top_level_only=False):
            root = imported.split(".")[0]
            if root in sys.stdlib_module_names or imported.startswith(allowed):
                continue
            offenders.append(f"{path.name}:{line} imports {imported}")
    assert not offenders, offenders


# ------------------------------------------------------------------ imports inside functions too


def _all_imports(name: str, tree: ast.AST, modules: dict[str, ast.Module]) -> set[str]:
    """The package's modules that ``name`` imports anywhere (at module scope or inside a
    function: a lazy import still runs, later), except under TYPE_CHECKING. ``from P import x``
    depends on the module P.x when x is one, else on P; importing a.b.c runs a/__init__ and
    a/b/__init__ too (the importer's own packages are running already)."""
    found: set[str] = set()

    def visit(node: ast.AST) -> None:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                continue
            if isinstance(child, ast.Import):
                found.update(alias.name for alias in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                for alias in child.names:
                    submodule = f"{child.module}.{alias.name}"
                    found.add(submodule if submodule in modules else child.module)
            visit(child)

    visit(tree)
    deps = {dep for dep in found if dep in modules and dep != name}
    for dep in list(deps):
        parts = dep.split(".")
        for i in range(1, len(parts)):
            parent = ".".join(parts[:i])
            if parent in modules and parent != name and not name.startswith(parent + "."):
                deps.add(parent)
    return deps


def test_no_import_cycles_counting_imports_inside_functions() -> None:
    modules = _modules()
    graph = {name: _all_imports(name, tree, modules) for name, tree in modules.items()}
    _fail_on_a_cycle(graph, "import cycle (counting imports inside functions)")


def test_only_the_cli_writes_to_stdout_and_stderr() -> None:
    """sys.stdout.write / sys.stderr.write (and writelines) only in search/cli/: the rest
    reports through return values and callbacks the CLI supplies."""
    offenders = []
    for name, tree in _modules().items():
        if name == "search.cli" or name.startswith("search.cli."):
            continue
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            stream = node.func.value
            if (
                node.func.attr in ("write", "writelines")
                and isinstance(stream, ast.Attribute)
                and stream.attr in ("stdout", "stderr", "__stdout__", "__stderr__")
                and isinstance(stream.value, ast.Name)
                and stream.value.id == "sys"
            ):
                offenders.append(f"{name}:{node.lineno} sys.{stream.attr}.{node.func.attr}")
    assert not offenders, offenders


# ---------------------------------------------------------------------------------- size limits

MAX_MODULE_LINES = 500
MAX_FUNCTION_LINES = 80
SIZE_EXEMPT: tuple[str, ...] = ()
"""Files exempt from the size limits, by path prefix: none."""


def _sized_files() -> list[Path]:
    return [
        path
        for path in sorted(PACKAGE.rglob("*.py"))
        if not str(path.relative_to(REPO)).startswith(SIZE_EXEMPT)
    ]


def test_no_module_over_500_lines() -> None:
    long = {
        str(path.relative_to(REPO)): n
        for path in _sized_files()
        if (n := len(path.read_text().splitlines())) > MAX_MODULE_LINES
    }
    assert not long, f"modules over {MAX_MODULE_LINES} lines: {long}"


def test_no_function_over_80_lines() -> None:
    long = {}
    for path in _sized_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                assert node.end_lineno is not None
                if (n := node.end_lineno - start + 1) > MAX_FUNCTION_LINES:
                    long[f"{path.relative_to(REPO)}:{node.lineno} {node.name}"] = n
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"
