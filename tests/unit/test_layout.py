"""The house's rules, read from the tree (ast): a recipe exports nothing but its config (and sections),
its run_*, its summary and RECIPE; no component imports a recipe; modules import one another without a cycle."""

import ast
import importlib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SRC = ROOT / "src" / "rejuv"


def _modules() -> dict[str, Path]:
    found = {}
    for path in SRC.rglob("*.py"):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


def _imports(path: Path, top_level_only: bool) -> list[tuple[str, list[str]]]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    out = []
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.append((node.module, [a.name for a in node.names]))
        elif isinstance(node, ast.Import):
            out += [(a.name, []) for a in node.names]
    return out


def _allowed(recipe: str, name: str) -> bool:
    from rejuv.options import Config

    module = importlib.import_module(recipe)
    obj = getattr(module, name, None)
    return (name == "RECIPE" or name.startswith("run_") or (isinstance(obj, type) and issubclass(obj, Config))
            or obj is module.RECIPE.summary)


def test_nothing_but_configs_run_and_recipe_is_imported_from_a_recipe():
    files = [*SRC.rglob("*.py"), *(ROOT / "tests").rglob("*.py"), *(ROOT / "benchmarks").glob("*.py")]
    wrong = []
    for path in files:
        here = path.relative_to(ROOT)
        for module, names in _imports(path, top_level_only=False):
            if module.startswith("rejuv.recipes.") and not (path.parent == SRC / "recipes" and module.endswith(
                    path.stem)):
                wrong += [f"{here}: {module}.{n}" for n in names if not _allowed(module, n)]
    assert wrong == []


def test_no_component_imports_a_recipe():
    """Components know nothing of the commands; the lab, the API and the CLI run recipes through their configs."""
    callers = {"rejuv.recipes", "rejuv.lab", "rejuv.api", "rejuv.cli"}
    wrong = []
    for name, path in _modules().items():
        if any(name == c or name.startswith(c + ".") for c in callers):
            continue
        wrong += [f"{name} imports {m}" for m, _ in _imports(path, top_level_only=False)
                  if m.startswith("rejuv.recipes")]
    assert wrong == []


def test_modules_import_one_another_without_a_cycle():
    modules = _modules()
    graph = {name: {m for m, _ in _imports(path, top_level_only=True) if m in modules and m != name}
             for name, path in modules.items()}
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):  # Tarjan's strongly connected components
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
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

    for v in graph:
        if v not in index:
            visit(v)
    assert cycles == []


def test_tests_mirror_the_package():
    """Every unit test file names a module of its package (tests/unit/<package>/test_<module>.py)."""
    modules = _modules()
    wrong = []
    for path in (ROOT / "tests" / "unit").rglob("test_*.py"):
        package = ".".join(("rejuv", *path.parent.relative_to(ROOT / "tests" / "unit").parts))
        module = f"{package}.{path.stem.removeprefix('test_')}".replace("rejuv..", "rejuv.")
        if module not in modules and path.stem != "test_layout":
            wrong.append(str(path.relative_to(ROOT)))
    assert wrong == []
