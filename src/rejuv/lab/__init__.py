"""The lab: the paper's experiment in miniature (task, world, presets, α/ρ rules, verdicts, report, the planner
check), run by `rejuv demo` (`rejuv.lab.demo`, the top of the house: it runs the recipes)."""
