"""Every example config in configs/ names only options its recipe knows, with values of the right kind."""

from dataclasses import is_dataclass
from pathlib import Path

import pytest
import yaml

from rejuv.options import build_config
from rejuv.planner.plan import PlanConfig
from rejuv.recipes.apply import ApplyConfig
from rejuv.recipes.eval import EvalConfig
from rejuv.recipes.rl import RLRecipeConfig
from rejuv.recipes.sft import SFTRecipeConfig

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


@pytest.mark.parametrize("name, recipe", [("apply.yaml", ApplyConfig), ("sft.yaml", SFTRecipeConfig),
                                          ("rl.yaml", RLRecipeConfig), ("eval.yaml", EvalConfig),
                                          ("plan.yaml", PlanConfig)])
def test_example_config_builds_its_recipe_config(name, recipe):
    config = build_config(recipe, {}, str(CONFIGS / name))  # typed, every required key present, none unknown
    _read_as_written(config, yaml.safe_load((CONFIGS / name).read_text()), name)


def _read_as_written(config, written: dict, where: str) -> None:
    """No key dropped or renamed; a section (`probe:`) holds its keys as written too."""
    for key, value in written.items():
        got = getattr(config, key.replace("-", "_"))
        if isinstance(value, dict) and is_dataclass(got):
            _read_as_written(got, value, f"{where}: {key}")
        else:
            assert got == value or got == [value], (where, key)


def test_the_tested_versions_lie_in_the_ranges_pyproject_states():
    """pyproject.toml states ranges (users keep their own CUDA torch); constraints.txt pins the tested set
    inside them, and every direct dependency is pinned there."""
    import tomllib
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    root = CONFIGS.parent
    project = tomllib.loads((root / "pyproject.toml").read_text())["project"]
    pinned = {}
    for line in (root / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[canonicalize_name(name)] = version.strip()
    for text in project["dependencies"] + project["optional-dependencies"]["dev"]:
        req = Requirement(text)
        assert not any(s.operator == "==" for s in req.specifier), f"{text}: a range, not a pin"
        version = pinned[canonicalize_name(req.name)]
        assert req.specifier.contains(version, prereleases=True), (text, version)


@pytest.mark.slow
def test_the_package_installs_with_the_constraints_file():
    """pip resolves rejuv against the exact tested set (what `make` and CI install) without a conflict."""
    import subprocess
    import sys

    root = CONFIGS.parent
    ok = subprocess.run([sys.executable, "-m", "pip", "install", "--dry-run", "-c",
                         str(root / "constraints.txt"), "-e", f"{root}[dev]"], capture_output=True, text=True)
    assert ok.returncode == 0 and "Would install rejuv" in ok.stdout, ok.stdout[-2000:] + ok.stderr[-2000:]
