"""`aiops backtest` (being written)."""
import click


@click.command(help="Rolling-origin backtest of forecasters on a trace (being written).")
def backtest() -> None:
    raise click.UsageError("not implemented yet")
