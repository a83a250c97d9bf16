"""The `forecast` command: train, backtest, predict, datasets and the demo job.

Exit codes: 0 success, 2 bad config or input (a message, no traceback), 1 anything else.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

log = logging.getLogger("forecast")

EXIT_OK, EXIT_ERROR, EXIT_BAD_INPUT = 0, 1, 2


class UsageError(Exception):
    """A problem with the command line or the files it names (exit code 2)."""


def _examples(text: str) -> str:
    return "example:\n" + textwrap.indent(textwrap.dedent(text).strip(), "  ")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="forecast",
        description="Train, backtest and run recurrent forecasting models tracked in MLflow.",
        epilog=_examples(
            """
            forecast datasets
            forecast train configs/elecdemand.yaml --set training.epochs=5
            forecast backtest configs/sunspots.yaml --folds 4
            forecast predict --model models:/elecdemand@champion --input history.csv \\
                --output forecasts.parquet
            """
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="count", default=0, help="more logging")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="errors only")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    def add(name: str, help_: str, example: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=help_,
            epilog=_examples(example),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        return p

    overrides = {
        "action": "append",
        "default": [],
        "metavar": "KEY=VALUE",
        "help": "override a config field, e.g. training.epochs=3 (repeatable)",
    }
    p = add(
        "train",
        "Train a model, score it against baselines, log it to MLflow, register and promote it.",
        "forecast train configs/sp500.yaml --set training.epochs=3 --set data.last_n=3000\n"
        "forecast train configs/sp500.yaml --resume 0123abcd...  # after a kill",
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("--set", dest="overrides", **overrides)
    p.add_argument(
        "--no-register", action="store_true", help="log the model but do not register it"
    )
    p.add_argument(
        "--resume",
        metavar="RUN_ID",
        help="continue a killed or failed train run of this config from its last epoch",
    )
    p.add_argument(
        "--refit-full",
        action="store_true",
        help="after scoring, refit on all rows and register that refit (training.refit=full)",
    )

    p = add(
        "backtest",
        "Rolling-origin backtest: refit scaler and model per fold, score every fold.",
        "forecast backtest configs/sunspots.yaml --folds 3 --set training.epochs=5",
    )
    p.add_argument("config", help="YAML config file")
    p.add_argument("--folds", type=int, help="number of origins (overrides backtest.folds)")
    p.add_argument("--set", dest="overrides", **overrides)
    p.add_argument("--output", help="write the per-fold table here (CSV or Parquet)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    p = add(
        "predict",
        "Forecast from raw history with a logged or registered model.",
        "forecast predict --model models:/elecdemand@champion --input history.parquet "
        "--output forecasts.csv\n"
        "forecast predict --engine spark --model models:/elecdemand@champion "
        "--input history.parquet --output forecasts.parquet.d",
    )
    p.add_argument("--model", required=True, help="MLflow model URI or a saved forecaster dir")
    p.add_argument("--input", required=True, help="history rows: CSV or Parquet")
    p.add_argument("--output", required=True, help="forecast rows: CSV or Parquet")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--engine",
        choices=("local", "spark"),
        default="local",
        help="local: in this process (default); spark: series grouped over Spark tasks, "
        "Parquet file or folder in, Parquet folder out, an `error` row per bad series",
    )
    p.add_argument(
        "--master", default=None, help="Spark master URL with --engine spark (default local[2])"
    )

    p = add(
        "tune",
        "Choose the model by rolling-origin backtests on the rows before the test part "
        "(Optuna, each trial a nested MLflow run); write the chosen config as YAML.",
        "forecast tune my_data.yaml --trials 30 --timeout 3600 --output chosen.yaml\n"
        "forecast train chosen.yaml",
    )
    p.add_argument("config", help="YAML config file (a model section is optional)")
    p.add_argument("--output", required=True, help="the chosen config: a .yaml file")
    p.add_argument("--trials", type=int, default=20, help="most trials to run (default 20)")
    p.add_argument("--timeout", type=float, default=None, help="stop starting trials after S s")
    p.add_argument("--seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    p.add_argument("--folds", type=int, help="backtest origins per trial (backtest.folds)")
    p.add_argument("--set", dest="overrides", **overrides)
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")

    p = add(
        "serve",
        "Serve a model over HTTP: MLflow's scoring server (/invocations, /ping) behind a guard "
        "that answers bad bodies with one-line 400s (forecast.serving.scoring_app).",
        "forecast serve --model models:/elecdemand@champion --port 5000",
    )
    p.add_argument("--model", required=True, help="MLflow model URI or an MLflow model folder")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    p.add_argument("--port", type=int, default=5000, help="port (default 5000)")
    p.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")

    add("datasets", "List the bundled real datasets.", "forecast datasets")

    p = add(
        "demo",
        "The main job on bundled data: train sp500 and elecdemand, promote, predict, plot.",
        "forecast demo --outputs outputs",
    )
    p.add_argument("--outputs", default="outputs", help="folder for forecasts and plots")
    p.add_argument("--configs", default=None, help="folder holding sp500.yaml, elecdemand.yaml")
    p.add_argument("--set", dest="overrides", **overrides)
    return parser


def _setup_logging(verbose: int, quiet: bool) -> None:
    """Progress (INFO) on a terminal, warnings only when not; -v / -q override."""
    if quiet:
        level = logging.ERROR
    elif verbose > 1:
        level = logging.DEBUG
    elif verbose == 1 or sys.stderr.isatty():
        level = logging.INFO
    else:
        level = logging.WARNING
    logging.basicConfig(level=level, format="%(message)s", stream=sys.stderr, force=True)
    if verbose < 2:
        # MLflow sets its own loggers' level when it is imported (after this runs): its
        # "Creating initial MLflow database tables" INFO lines stay out unless -vv.
        os.environ.setdefault(
            "MLFLOW_LOGGING_LEVEL", logging.getLevelName(max(level, logging.WARNING))
        )
        for noisy in ("mlflow", "alembic", "urllib3", "absl", "tensorflow", "matplotlib"):
            logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit code."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    try:
        return _dispatch(args)
    except KeyboardInterrupt:
        print("forecast: interrupted", file=sys.stderr)
        return EXIT_ERROR
    except Exception as err:  # the one place errors become exit codes
        from pipelines.errors import ForecastError

        if isinstance(err, ForecastError | UsageError):
            print(f"forecast: error: {err}", file=sys.stderr)
            return EXIT_BAD_INPUT
        bad_input = _mlflow_bad_input(err)
        if bad_input is not None:
            print(f"forecast: error: {bad_input}", file=sys.stderr)
            return EXIT_BAD_INPUT
        log.exception("forecast: failed: %s", err)
        return EXIT_ERROR


def _mlflow_bad_input(err: Exception) -> str | None:
    """MLflow errors that mean 'the thing you named does not exist or is invalid'."""
    try:
        from mlflow.exceptions import MlflowException
    except ImportError:  # pragma: no cover
        return None
    if isinstance(err, MlflowException) and err.error_code in (
        "RESOURCE_DOES_NOT_EXIST",
        "INVALID_PARAMETER_VALUE",
        "BAD_REQUEST",
        "NOT_FOUND",
    ):
        return err.message
    return None


def _dispatch(args: argparse.Namespace) -> int:
    if args.command == "datasets":
        return _datasets()
    if args.command == "train":
        return _train(args)
    if args.command == "backtest":
        return _backtest(args)
    if args.command == "predict":
        return _predict(args)
    if args.command == "tune":
        return _tune(args)
    if args.command == "serve":
        return _serve(args)
    if args.command == "demo":
        _load_tensorflow()
        from forecast.jobs.demo import run_demo

        return run_demo(outputs=args.outputs, configs=args.configs, overrides=args.overrides)
    raise UsageError(f"unknown command {args.command!r}")  # argparse prevents this


def _load_tensorflow() -> None:
    """Once the command's arguments are checked (a typo is reported before TensorFlow loads)."""
    from forecast.quiet import import_tensorflow_quietly

    import_tensorflow_quietly()


def _datasets() -> int:
    from pipelines import datasets

    for name in datasets.names():
        ds = datasets.load(name)
        first = ds.frame[ds.schema.time_col].min()
        last = ds.frame[ds.schema.time_col].max()
        n_series = ds.frame[ds.schema.id_col].nunique() if ds.schema.id_col else 1
        print(
            f"{name:15s} {len(ds.frame):>6d} rows  {n_series} series  {first} .. {last}  "
            f"targets={list(ds.schema.targets)}  ({ds.source})"
        )
    return EXIT_OK


def _train(args: argparse.Namespace) -> int:
    from forecast.config import load_config

    refit = ("training.refit=full",) if args.refit_full else ()
    config = load_config(args.config, (*args.overrides, *refit))
    _open_store(config)
    _load_tensorflow()
    from forecast.jobs.auto import train_auto  # `model: auto` tunes first

    outcome = train_auto(config, register=False if args.no_register else None, resume=args.resume)
    print(outcome.report())
    return EXIT_OK


def _backtest(args: argparse.Namespace) -> int:
    from forecast.config import load_config
    from pipelines.sources import write_frame

    out = _check_output(args.output, args.overwrite) if args.output else None
    if args.folds is not None and args.folds < 1:
        raise UsageError(f"--folds must be >= 1. Received: {args.folds}")
    config = load_config(args.config, tuple(args.overrides))
    _open_store(config)
    _load_tensorflow()
    from forecast.jobs.backtest import run_backtest

    result = run_backtest(config, folds=args.folds)
    print(result.report())
    if out is not None:
        write_frame(result.folds, out, overwrite=args.overwrite)
        print(f"per-fold table: {out}")
    return EXIT_OK


def _open_store(config: Any) -> None:
    """Probe the tracking store before TensorFlow loads: a dead server fails in seconds."""
    from forecast.tracking.store import open_store, resolve_tracking_uri

    open_store(resolve_tracking_uri(config.tracking.tracking_uri))


def _tune(args: argparse.Namespace) -> int:
    from dataclasses import replace

    from forecast.config import load_config
    from forecast.jobs.tune_args import check_arguments

    check_arguments(args.trials, args.timeout, args.output, args.overwrite)
    if args.folds is not None and args.folds < 1:
        raise UsageError(f"--folds must be >= 1. Received: {args.folds}")
    config = load_config(args.config, tuple(args.overrides))
    if args.folds is not None:
        config = replace(config, backtest=replace(config.backtest, folds=args.folds))
    _open_store(config)
    _load_tensorflow()
    from forecast.jobs.tune import trial_params_yaml, tune_job

    result = tune_job(
        config,
        output=args.output,
        trials=args.trials,
        timeout=args.timeout,
        seed=args.seed,
        overwrite=args.overwrite,
    )
    print(
        f"Tuned over {len(result.trials)} trials, run {result.run_id}: best mean MASE "
        f"{result.best_value:.4f} on backtest folds before the test part."
    )
    if result.verdict:
        print(result.verdict)
    print(trial_params_yaml(result), end="")
    print(f"chosen config: {result.output} (train it with: forecast train {result.output})")
    return EXIT_OK


def _predict(args: argparse.Namespace) -> int:
    if args.engine == "spark":
        return _predict_spark(args)
    if args.master is not None:
        raise UsageError("--master is a Spark setting: use it with --engine spark")
    from forecast.model_uri import check_model_uri
    from pipelines.sources import write_frame

    out = _check_output(args.output, args.overwrite)
    history = _read_input(args.input)
    check_model_uri(args.model)
    _load_tensorflow()
    from forecast.serving.batch import load_model, predict_frame

    model = load_model(args.model)
    forecasts = predict_frame(model, history)
    write_frame(forecasts, out, overwrite=args.overwrite)
    n_series = forecasts["series"].nunique() if "series" in forecasts else 0
    print(f"wrote {len(forecasts)} forecast rows for {n_series} series to {out}")
    return EXIT_OK


def _predict_spark(args: argparse.Namespace) -> int:
    """Batch predict on Spark (`forecast.serving.spark`): the same rows as the local engine."""
    from forecast.model_uri import check_model_uri

    if "://" not in args.input and not Path(args.input).exists():
        raise UsageError(f"input {args.input!r} not found: expected a Parquet file or folder")
    if "://" not in args.output and Path(args.output).exists() and not args.overwrite:
        raise UsageError(f"{args.output!r} exists; pass --overwrite to replace it")
    check_model_uri(args.model)
    _load_tensorflow()
    try:
        from forecast.serving.spark import predict_parquet
    except ImportError as err:
        raise UsageError(
            f"--engine spark needs PySpark ({err}); install the spark extra: "
            "pip install 'rnn-forecast[cpu,spark]'"
        ) from None
    try:
        summary = predict_parquet(
            args.model,
            args.input,
            args.output,
            master=args.master or "local[2]",
            overwrite=args.overwrite,
        )
    except FileExistsError as err:  # an existing output on another file system
        raise UsageError(str(err).replace("overwrite=True", "--overwrite")) from None
    failed = summary.failed_series
    print(
        f"wrote {summary.rows} forecast rows for {summary.series} series to {summary.output_path}"
        + (f" ({failed} series failed: see the `error` column)" if failed else "")
    )
    return EXIT_OK


def _serve(args: argparse.Namespace) -> int:
    """Download the model, then become uvicorn running the guarded MLflow scoring app."""
    from forecast.model_uri import check_model_uri

    check_model_uri(args.model)
    if not 0 < args.port < 65536 or args.workers < 1:
        raise UsageError(
            f"--port must be in 1..65535 and --workers >= 1. Received: --port {args.port} "
            f"--workers {args.workers}"
        )
    from mlflow.artifacts import download_artifacts

    from forecast.serving.scoring_app import MODEL_ENV
    from forecast.serving.workers import listening_sockets, serve

    # One socket per worker (SO_REUSEPORT): uvicorn's shared socket leaves keep-alive
    # connections opened together on one worker (forecast/serving/workers.py). Bound before
    # the download, so a port in use is refused at once.
    sockets = listening_sockets(args.host, args.port, args.workers)
    local = download_artifacts(artifact_uri=args.model)
    code = serve(sockets, env={**os.environ, MODEL_ENV: local})
    sys.stdout.flush()
    sys.stderr.flush()
    # Nothing is left to clean up once the workers are gone, and finalizing this process's
    # imports (TensorFlow, MLflow) takes seconds: end as the execve of uvicorn used to.
    os._exit(code)


def _check_output(path: str, overwrite: bool) -> Path:
    """Refuse an output before any work: unknown suffix, existing file, missing folder."""
    from pipelines.sources import file_format

    out = Path(path)
    file_format(out)
    if out.exists() and not overwrite:
        raise UsageError(f"{path!r} exists; pass --overwrite to replace it")
    if not out.parent.exists():
        raise UsageError(f"output folder {str(out.parent)!r} does not exist")
    return out


def _read_input(path: str) -> Any:
    from pipelines.sources import file_format, read_frame

    p = Path(path)
    if not p.is_file():
        raise UsageError(f"input file {path!r} not found")
    file_format(p)
    return read_frame(p)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
