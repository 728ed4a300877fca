"""Every example config in configs/ names only options its recipe knows, with values of the right kind."""

from dataclasses import fields
from pathlib import Path

import pytest

from rejuv.apply import ApplyConfig
from rejuv.cli import load_yaml_config
from rejuv.evaluate import EvalConfig
from rejuv.plan import PlanConfig
from rejuv.train.rl import RLRecipeConfig
from rejuv.train.sft import SFTRecipeConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs"


@pytest.mark.parametrize("name, recipe", [("apply.yaml", ApplyConfig), ("sft.yaml", SFTRecipeConfig),
                                          ("rl.yaml", RLRecipeConfig), ("eval.yaml", EvalConfig),
                                          ("plan.yaml", PlanConfig)])
def test_example_config_builds_its_recipe_config(name, recipe):
    values = load_yaml_config(str(CONFIGS / name), [f.name for f in fields(recipe)])
    config = recipe(**values)  # every required field present, no unknown key
    defaults = recipe.__dataclass_fields__
    for key, value in values.items():
        default = defaults[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool) and value is not None:
            assert isinstance(value, (int, float)), (name, key, value)
    for key, value in values.items():
        assert getattr(config, key) == value, (name, key)  # read as written, no key dropped or renamed
