"""`python -m pipeline.baselines`: see `pipeline.cli.baselines`."""

from .cli.baselines import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
