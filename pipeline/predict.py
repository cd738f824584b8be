"""`python -m pipeline.predict`: see `pipeline.cli.predict`."""

from .cli.predict import main

if __name__ == "__main__":
    from .core.errors import run_cli

    raise SystemExit(run_cli(main))
