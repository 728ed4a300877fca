"""Recipes: one module per `rejuv` command, each with its config (the command's options) and its `run_*`.

Recipes compose the components (everything outside this package and `lab/`); no component imports a recipe.
"""
