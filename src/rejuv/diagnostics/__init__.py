"""Plasticity diagnostics: parameter drift (params), output statistics (outputs), report (report)."""
