"""The lab's presets: what a world is (the settings a seed's numbers depend on), and what is not part of it."""

from dataclasses import asdict, replace

from rejuv.lab.presets import PLANNER_ONLY, PRESETS, world_of


def test_seeds_and_the_planners_settings_are_no_part_of_the_world():
    small, numerics = PRESETS["small"], {"threads": 2, "cpu_capability": "AVX512"}
    world = world_of(asdict(small), numerics)
    assert world == world_of(asdict(replace(small, seeds=[7, 8])), numerics)
    assert world == world_of(asdict(PRESETS["planner"]), numerics)  # the planner preset adds to the small world
    assert world != world_of(asdict(replace(small, rl_steps=250)), numerics)
    assert world != world_of(asdict(small), {**numerics, "cpu_capability": "AVX2"})
    assert not set(PLANNER_ONLY) & set(world["settings"]) and "seeds" not in world["settings"]
