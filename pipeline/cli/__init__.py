"""The command-line programs: argument parsing, one-line errors (`core.errors.run_cli`), printing.

Owns: `search`, `train`, `predict`, `report`, `compare`, `baselines` (each `python -m
pipeline.<name>` through a two-line shim at the package's top level) and `common` (flags
shared by several commands). May import every other sub-package; nothing imports it.
"""
