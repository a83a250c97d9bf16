"""Scoring forecasts in original units: metrics, baselines, scoring a part, interval
recalibration and plots."""
