"""`python -m pipeline.search`: see `pipeline.cli.search`."""

from .cli.search import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
