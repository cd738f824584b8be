"""`python -m pipeline.report`: see `pipeline.cli.report`."""

from .cli.report import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
