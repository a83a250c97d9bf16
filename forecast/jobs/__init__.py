"""The batch jobs behind the CLI: train, backtest and the demo, with their file I/O."""
