"""The lab: the paper's experiment in miniature (task, world, demo recipe, report)."""
