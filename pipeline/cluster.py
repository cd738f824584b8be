"""`python -m pipeline.cluster`: see `pipeline.cli.cluster`."""

from .cli.cluster import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
