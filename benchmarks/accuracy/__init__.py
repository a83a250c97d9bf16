"""The accuracy suite (issue 14 §4): real series across frequencies, one rolling-origin
protocol each, the model against seasonal naive and statsforecast's classical models.

Run from the repository root::

    .venv/bin/python -m benchmarks.accuracy                    # every series, model + classical
    .venv/bin/python -m benchmarks.accuracy --classical-only   # the classical columns alone
    .venv/bin/python -m benchmarks.accuracy --quick            # smoke: 2 series, 1 epoch
    .venv/bin/python -m benchmarks.accuracy --series a10 --seeds 0,1,2
    .venv/bin/python -m benchmarks.accuracy --tune             # configs from `forecast tune`

Protocol (`benchmarks.accuracy.series.Protocol`, the one definition): the last TEST points
of each series are the test period; the first origin is the point before it and origins
follow every STEP points while a whole horizon fits. MASE is scaled by the in-sample
seasonal-naive MAE of the rows before the test period and averaged over series, origins
and steps. Every method is fitted (and the model tuned) on the rows before the test
period only; the model is then the served forecaster called at each origin with the
history before it, the classical models are run forward from each origin with their
fitted parameters. `benchmarks.accuracy.shipped` scores the shipped configs instead.
"""
