"""The hand-off planner's components: search grid, probe metrics, recommendation, report (no CLI, no I/O of models)."""
