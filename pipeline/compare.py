"""`python -m pipeline.compare`: see `pipeline.cli.compare`."""

from .cli.compare import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
