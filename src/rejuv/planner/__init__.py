"""The hand-off planner, an application on top of the recipes: `rejuv plan` (`plan.py`) runs diagnose, apply,
eval and short rl probes; `search.py` and `field_rules.py` compute from their numbers, `report.py` draws the page."""
