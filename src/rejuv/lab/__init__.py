"""The lab: the paper's experiment in miniature (task, world, presets, α/ρ rules, verdicts, report, the planner
check), run by the `demo` recipe (`rejuv.recipes.demo`)."""
