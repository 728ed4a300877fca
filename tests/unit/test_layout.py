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
    """Components know nothing of the commands; the applications (plan, the lab), the API and the CLI run recipes
    through their configs."""
    callers = {"rejuv.recipes", "rejuv.planner", "rejuv.lab", "rejuv.api", "rejuv.cli"}
    wrong = []
    for name, path in _modules().items():
        if any(name == c or name.startswith(c + ".") for c in callers):
            continue
        wrong += [f"{name} imports {m}" for m, _ in _imports(path, top_level_only=False)
                  if m.startswith("rejuv.recipes")]
    assert wrong == []


def _graph() -> dict[str, set[str]]:
    """Module → the rejuv modules it imports, at the top or inside a function alike (`from a import b` counts b
    when b is a module)."""
    modules = _modules()
    graph = {}
    for name, path in modules.items():
        found = set()
        for module, names in _imports(path, top_level_only=False):
            found |= {module} | {f"{module}.{n}" for n in names}
        graph[name] = {m for m in found if m in modules and m != name}
    return graph


# The floors of the house, bottom up: a module imports its own floor or lower ones, never higher. The package
# root defines the version and re-exports the API lazily (no import), so it sits on the ground floor.
FLOORS = (
    ("ground", ("rejuv", "rejuv.errors", "rejuv.progress", "rejuv.provenance", "rejuv.options")),
    ("components", ("rejuv.io", "rejuv.data", "rejuv.modeling", "rejuv.method", "rejuv.diagnostics",
                    "rejuv.evaluation", "rejuv.train", "rejuv.report")),
    ("recipes", ("rejuv.recipes",)),
    # commands that run other commands: `plan` (diagnose, apply, eval and rl probes) and the lab (all of them)
    ("applications", ("rejuv.planner", "rejuv.lab")),
    ("entry points", ("rejuv.api", "rejuv.cli")),
)


def _floor(module: str) -> int:
    best = None
    for i, (_, prefixes) in enumerate(FLOORS):
        for prefix in prefixes:
            if module == prefix or module.startswith(prefix + "."):
                if best is None or len(prefix) > best[1]:
                    best = (i, len(prefix))
    assert best is not None, f"{module} is on no floor: name its floor in FLOORS"
    return best[0]


def test_no_module_imports_from_a_higher_floor():
    """Counting imports inside functions: the lab runs recipes and no recipe imports the lab; components know
    nothing of the recipes; the CLI and the API sit on top."""
    graph = _graph()
    wrong = [f"{a} ({FLOORS[_floor(a)][0]}) imports {b} ({FLOORS[_floor(b)][0]})"
             for a, found in graph.items() for b in sorted(found) if _floor(b) > _floor(a)]
    assert wrong == []


def test_no_recipe_imports_another_recipe():
    """Recipes stand side by side (torchtune's never import one another): what two of them share lives in a
    component (diagnose evaluates through `rejuv.evaluation.sampled`, as eval does); a command that runs other
    commands (`plan`, the lab's `demo`) is an application on the floor above."""
    graph = _graph()
    found = sorted(f"{a} imports {b}" for a, bs in graph.items() for b in bs
                   if a.startswith("rejuv.recipes.") and b.startswith("rejuv.recipes."))
    assert found == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The import graph's strongly connected components of more than one module (Tarjan)."""
    index, low, stack, on_stack, cycles = {}, {}, [], set(), []

    def visit(v):
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
    return cycles


def test_modules_import_one_another_without_a_cycle():
    """Counting imports inside functions, which a top-level reading misses."""
    assert _cycles(_graph()) == []


# A body longer than this reads as one block; split it into named stages (torchtune's load_checkpoint, train,
# save_checkpoint). Lines from `def` to the end, its docstring left out.
MAX_FUNCTION_LINES = 60
LONG_ON_PURPOSE = {
    "rejuv.train.grpo.rejuv_grpo_trainer_class": "a TRL subclass defined inside a function so that TRL is imported "
                                                 "only when GRPO runs; its methods are each under 30 lines",
}


def _function_lengths() -> dict[str, int]:
    lengths = {}
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                first = node.body[0]
                if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(
                        first.value.value, str):
                    lines -= first.end_lineno - first.lineno + 1
                key = f"{name}.{node.name}"
                lengths[key] = max(lines, lengths.get(key, 0))
    return lengths


def test_no_body_runs_longer_than_its_stages():
    long = {f: n for f, n in _function_lengths().items() if n > MAX_FUNCTION_LINES and f not in LONG_ON_PURPOSE}
    assert long == {}
    assert all(_function_lengths().get(f, 0) > MAX_FUNCTION_LINES for f in LONG_ON_PURPOSE), "a stale entry"


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


# Modules without a unit test file of their own (tests/unit/<package>/test_<module>.py), each with where it is
# tested instead or why it needs none. The list may only shrink: a module missing from it and from the unit tests
# fails, and so does an entry whose module now has its own file (or is gone).
TESTED_ELSEWHERE = {
    "rejuv.api": "three calls into recipes: tests/recipes/test_apply.py and test_diagnose.py call them",
    "rejuv.cli": "the command line of every recipe: tests/recipes/*, tests/guarantees/* invoke it",
    "rejuv.errors": "an exception type and the warning channel: every refusal test goes through them",
    "rejuv.provenance": "versions and what ran: the records' `ran` fields, checked in tests/recipes/*",
    "rejuv.modeling": "loading: tests/guarantees/test_complete_loading.py (8 damages × 5 commands)",
    "rejuv.diagnostics.report": "the diagnosis page: tests/recipes/test_diagnose.py (schema, headless browser)",
    "rejuv.evaluation.engines": "generation: tests/recipes/test_eval.py (transformers and a vLLM stand-in)",
    "rejuv.evaluation.verl_reward": "verl's compute_score: tests/recipes/test_export_verl.py",
    "rejuv.io.inputs": "model arguments resolved: tests/recipes/test_hub.py against a local Hub",
    "rejuv.lab.demo": "the lab end to end: tests/lab/test_demo.py",
    "rejuv.lab.results": "results read back from step folders: tests/lab/test_demo.py on the smoke world",
    "rejuv.lab.tokenizer": "the lab's character tokenizer: tests/unit/lab/test_task.py and every tiny model",
    "rejuv.lab.world": "the lab's base model: tests/unit/lab/test_task.py",
    "rejuv.method.attribution_record": "attribution records read back: tests/recipes/test_apply.py (9 edits)",
    "rejuv.method.passes": "the calibration passes: tests/recipes/test_apply.py and test_families.py",
    "rejuv.planner.report": "the plan page: tests/planner/test_plan.py",
    "rejuv.planner.plan": "`rejuv plan` end to end: tests/planner/test_plan.py",
    "rejuv.evaluation.sampled": "sampled evaluation end to end: tests/recipes/test_eval.py (resume, damages, engines)",
    "rejuv.report.figures": "matplotlib to PNG bytes: every report test renders one",
    "rejuv.train.grpo": "TRL's GRPOTrainer with CHORD and the filter: tests/recipes/test_rl.py, tests/unit/train",
    "rejuv.train.pear": "PEAR's weights: tests/recipes/test_sft.py",
    **{f"rejuv.recipes.{r}": f"a recipe end to end: tests/recipes/test_{r}.py"
       for r in ("apply", "diagnose", "eval", "export_verl", "rl", "sft")},
}


def test_every_module_has_a_unit_test_file_or_says_where_it_is_tested():
    missing, stale = [], []
    for name, path in _modules().items():
        if path.name == "__init__.py":
            continue
        parts = name.split(".")[1:]
        own = ROOT / "tests" / "unit" / Path(*parts[:-1]) / f"test_{parts[-1]}.py"
        if not own.exists() and name not in TESTED_ELSEWHERE:
            missing.append(name)
        if own.exists() and name in TESTED_ELSEWHERE:
            stale.append(name)
    gone = sorted(set(TESTED_ELSEWHERE) - set(_modules()))
    assert (missing, stale, gone) == ([], [], [])


def house_counts() -> dict:
    """The figures the checks above hold at zero, and the sizes they bound: `python tests/unit/test_layout.py`."""
    graph = _graph()
    lengths = _function_lengths()
    module_lines = {name: len(path.read_text().splitlines()) for name, path in _modules().items()}
    longest = max(lengths, key=lengths.get)
    biggest = max(module_lines, key=module_lines.get)
    inner = sum(sum(m.startswith("rejuv") for m, _ in _imports(p, False)) - sum(
        m.startswith("rejuv") for m, _ in _imports(p, True)) for p in _modules().values())
    return {
        "modules": len(graph),
        "imports_between_modules": sum(len(v) for v in graph.values()),
        "rejuv_imports_inside_functions": inner,
        "cycles": len(_cycles(graph)),
        "upward_imports": sum(_floor(b) > _floor(a) for a, bs in graph.items() for b in bs),
        "recipe_imports_of_recipes": sum(a.startswith("rejuv.recipes.") and b.startswith("rejuv.recipes.")
                                         for a, bs in graph.items() for b in bs),
        "recipe_imports_of_the_lab": sum(a.startswith("rejuv.recipes.") and b.startswith("rejuv.lab")
                                         for a, bs in graph.items() for b in bs),
        "longest_function": f"{longest} ({lengths[longest]} lines without its docstring)",
        "functions_over_limit": sorted(f for f, n in lengths.items() if n > MAX_FUNCTION_LINES),
        "longest_module": f"{biggest} ({module_lines[biggest]} lines)",
        "modules_without_a_unit_test_file": len(TESTED_ELSEWHERE),
    }


if __name__ == "__main__":
    import json

    print(json.dumps(house_counts(), indent=2))
