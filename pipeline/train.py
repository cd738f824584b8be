"""`python -m pipeline.train`: see `pipeline.cli.train`."""

from .cli.train import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
