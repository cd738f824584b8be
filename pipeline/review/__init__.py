"""Review: what a finished run looks like to a person, made from the run's files alone.

Owns: tidy tables from scikit-learn's `cv_results_` (`tables`), matplotlib figures (`plots`),
the per-run report in Markdown and self-contained HTML (`report`) and runs side by side
(`compare`). Everything here reads CSV/JSON/YAML and writes files; it trains nothing.
May import: `pipeline.core`, pandas, matplotlib, yaml. Never TensorFlow, Keras or scikeras, and
no other `pipeline` layer (checked by the import-linter contracts in pyproject.toml).
"""
