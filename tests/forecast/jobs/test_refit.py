"""The refit on all rows runs the same data path as the evaluated model, calendar included."""

from __future__ import annotations

from forecast.config import load_config
from forecast.data import load_source, prepare
from forecast.jobs.refit import all_rows
from tests.conftest import REPO_ROOT


def test_the_refit_keeps_the_configured_exchange_calendar():
    # sp500 says `calendar: XNYS`: a refit that inferred its own calendar would register a
    # model whose served horizon runs over exchange holidays.
    config = load_config(REPO_ROOT / "configs" / "sp500.yaml", ("data.last_n=400",))
    source = load_source(config.data)
    refit = all_rows(config, source)
    assert refit.calendar.kind == "exchange" and refit.calendar.exchange == "XNYS"
    assert refit.calendar == prepare(config, source).calendar
