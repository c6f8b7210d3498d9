"""`aiops train` and `aiops models` (being written)."""
import click


@click.command(help="Train and register a forecaster (being written).")
def train() -> None:
    raise click.UsageError("not implemented yet")


@click.group(help="List, promote and roll back registered forecasters (being written).")
def models() -> None:
    pass
