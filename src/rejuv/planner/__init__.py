"""The hand-off planner's components: search grid, probe metrics, ranking, report (no CLI, no I/O of models)."""
