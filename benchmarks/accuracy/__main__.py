"""Command line of the accuracy suite; see the package docstring."""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")

from forecast.evaluation.classical import CLASSICAL  # noqa: E402
from pipelines.errors import ConfigError, DataValidationError  # noqa: E402
from pipelines.sources import atomic_write  # noqa: E402

from . import classical, combination, model  # noqa: E402
from .model import OPTIONS_OFF  # noqa: E402
from .series import QUICK, SUITE  # noqa: E402

COLUMNS = ("seasonal_naive", *CLASSICAL)


def _fmt(entry: dict | None, metric: str = "mase") -> str:
    if entry is None:
        return ""
    if "metrics" not in entry:
        return "n/f" if "time budget" in (entry.get("note") or "") else "n/a"
    return f"{entry['metrics'][metric]:.3f}"


def markdown(results: dict[str, dict], command: str) -> str:
    """The RESULTS.md table: MASE of each method per series, the best classical one, and
    the model's mean and spread over seeds with its tuning and training time."""
    head = (
        "| series | freq | H | origins | seasonal naive | AutoETS | AutoTheta | MSTL | AutoARIMA "
        "| best classical | model (mean ± sd, seeds) | model vs best | seed median | median vs "
        "best | tune s | train s | classical s |"
    )
    lines = [f"`{command}`", "", head, "|" + "---|" * 17]
    notes = []
    for name, r in results.items():
        s = SUITE[name]
        c = r["classical"]
        finished = {k: c[k]["metrics"]["mase"] for k in CLASSICAL if "metrics" in c.get(k, {})}
        best = min(finished, key=finished.get) if finished else None
        m = r.get("model")
        if m and "refused" in m:  # the protocol does not fit the series (e.g. too many folds)
            notes.append(f"- {name}, model: not run: {m['refused']}")
            m = None
        if m:
            spread = f"{m['mase_mean']:.3f} ± {m['mase_std']:.3f} ({len(m['seeds'])})"
            versus = f"{m['mase_mean'] / finished[best]:.2f}x" if best else ""
            times = (f"{m['tune_s']:.0f}", f"{m['train_s']:.0f}")
            e = m.get("ensemble")
            median = ("", "")
            if e:
                median = (f"{e['mase']:.3f}", f"{e['mase'] / finished[best]:.2f}x" if best else "")
        else:
            spread, versus, times, median = "not run", "", ("", ""), ("", "")
        secs = sum(c[k].get("seconds", 0.0) for k in CLASSICAL if k in c)
        n_origins = len(s.protocol.origins(r["length"]))
        cells = [_fmt(c.get(k)) for k in COLUMNS]
        best_cell = f"{CLASSICAL[best]} {finished[best]:.3f}" if best else ""
        lines.append(
            f"| {name} | {s.freq} | {s.protocol.horizon} | {n_origins} | "
            + " | ".join(cells)
            + f" | {best_cell} | {spread} | {versus} | {median[0]} | {median[1]}"
            + f" | {times[0]} | {times[1]} | {secs:.0f} |"
        )
        for k in CLASSICAL:
            note = c.get(k, {}).get("note")
            if note:
                notes.append(f"- {name}, {CLASSICAL[k]}: {note}")
        if s.kind == "returns":
            parts = [
                f"{label} coverage_80 {c[k]['metrics']['coverage_80']:.3f}, pinball "
                f"{c[k]['metrics']['pinball_mean']:.5f}"
                for k, label in CLASSICAL.items()
                if "metrics" in c.get(k, {}) and "coverage_80" in c[k]["metrics"]
            ]
            if m and "coverage_80" in m["per_seed"][0]:
                cov = [p["coverage_80"] for p in m["per_seed"]]
                pin = [p["pinball_mean"] for p in m["per_seed"]]
                parts.insert(
                    0,
                    f"model coverage_80 {sum(cov) / len(cov):.3f}, pinball {sum(pin) / len(pin):.5f}",
                )
                if "ensemble" in m:
                    e = m["ensemble"]
                    parts.insert(
                        1,
                        f"seed median coverage_80 {e['coverage_80']:.3f}, pinball "
                        f"{e['pinball_mean']:.5f}",
                    )
            rw = c.get("random_walk", {}).get("metrics", {}).get("mase")
            notes.append(
                f"- {name} (returns): zero-return random walk MASE {rw:.3f}; " + "; ".join(parts)
            )
    lines += ["", "n/f: did not finish in its time budget; n/a: not applicable (see notes)."]
    return "\n".join(lines + ([""] + notes if notes else []))


def ablation_markdown(results: dict[str, dict]) -> str:
    """MASE of the tuned config, and of the same config with each §2 option it uses
    switched off (its ratio to the tuned config's in brackets; "-": not used)."""
    keys = list(OPTIONS_OFF)
    head = "| series | tuned: options on | tuned MASE | " + " | ".join(f"no {k}" for k in keys)
    lines = [head + " | other residual base | all off |", "|" + "---|" * (len(keys) + 5)]
    for name, r in results.items():
        m = r.get("model") or {}
        if "ablations" not in m:
            continue
        model = m["config"]["model"]
        used = [k for k in keys if model.get(k) not in (OPTIONS_OFF[k], None, [])]
        cells = []
        for variant in [f"no {k}" for k in keys] + ["other base", "all off"]:
            a = m["ablations"].get(variant)
            cells.append(
                f"{a['mase_mean']:.3f} ({a['mase_mean'] / m['mase_mean']:.2f}x)" if a else "-"
            )
        on = ", ".join(f"{k} {model[k]}" for k in used) or "none"
        lines.append(
            f"| {name} | {on} | {m['mase_mean']:.3f} ± {m['mase_std']:.3f} | "
            + " | ".join(cells)
            + " |"
        )
    return "\n".join(lines)


def verdict_markdown(results: dict[str, dict]) -> str:
    """Does tune's pre-test verdict foretell the test period's? The chosen trial's mean fold
    MASE against the best classical model on the same fold windows (what `forecast tune`
    reports), beside the model against the best classical model on the test period."""
    head = (
        "| series | folds: model | folds: best classical | folds: model vs best "
        "| test: model vs best | same verdict |"
    )
    lines = [head, "|" + "---|" * 6]
    for name, r in results.items():
        m = r.get("model") or {}
        folds = m.get("tune_classical")
        ran = {k: v for k, v in (folds or {}).items() if k in CLASSICAL}
        if not ran:
            continue
        best = min(ran, key=ran.get)
        before = folds["model"] / ran[best]
        c = r["classical"]
        test = {k: c[k]["metrics"]["mase"] for k in CLASSICAL if "metrics" in c.get(k, {})}
        after = m["mase_mean"] / min(test.values())
        lines.append(
            f"| {name} | {folds['model']:.3f} | {CLASSICAL[best]} {ran[best]:.3f} | "
            f"{before:.2f}x | {after:.2f}x | {'yes' if (before < 1) == (after < 1) else 'no'} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.accuracy", description=__doc__)
    parser.add_argument("--series", action="append", choices=sorted(SUITE), help="repeatable")
    parser.add_argument(
        "--quick", action="store_true", help=f"smoke run: {list(QUICK)}, 1 epoch of a tiny network"
    )
    parser.add_argument("--classical-only", action="store_true", help="skip the model")
    parser.add_argument("--seeds", default="0", help="comma-separated training seeds")
    parser.add_argument("--tune", action="store_true", help="configs from `forecast tune`")
    parser.add_argument("--trials", type=int, default=20, help="tuning trials per series")
    parser.add_argument("--tune-timeout", type=float, help="seconds of tuning per series")
    parser.add_argument(
        "--tune-folds", type=int, default=3, help="backtest origins per tuning trial (default 3)"
    )
    parser.add_argument(
        "--ablate", action="store_true", help="also train the config with each §2 option off"
    )
    parser.add_argument("--ablate-seeds", default="0", help="seeds of the ablation runs")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per classical model")
    parser.add_argument(
        "--classical-from",
        help="reuse the classical scores of an earlier --json file (same protocols) "
        "instead of refitting them",
    )
    parser.add_argument("--markdown", help="write the table here (atomically)")
    parser.add_argument("--json", help="write every score here (atomically)")
    parser.add_argument(
        "--configs-from",
        action="append",
        help="an earlier run's JSON (repeatable): reuse each series' chosen config, no tuning",
    )
    args = parser.parse_args(argv)
    names = args.series or (list(QUICK) if args.quick else list(SUITE))
    seeds = tuple(int(s) for s in args.seeds.split(","))
    command = "python -m benchmarks.accuracy " + " ".join(
        argv if argv is not None else sys.argv[1:]
    )
    print(f"accuracy suite: {names}; load average {os.getloadavg()[0]:.2f} ({os.cpu_count()} CPUs)")
    start = time.perf_counter()
    earlier = json.loads(open(args.classical_from).read()) if args.classical_from else {}
    configs = {}
    for path in args.configs_from or []:
        configs |= {
            k: v["model"]
            for k, v in json.loads(open(path).read()).items()
            if "config" in v.get("model", {})  # not a series whose config was refused
        }
    results: dict[str, dict] = {}
    for name in names:
        s = SUITE[name]
        length = int(s.frame().groupby("series").size().iloc[0])
        if name in earlier and earlier[name]["length"] == length:
            fitted = earlier[name]["classical"]
        else:
            fitted = classical.run_series(s, timeout=args.timeout)
        entry = {"length": length, "classical": fitted}
        results[name] = entry
        _write(args, results, command.strip())  # the classical scores survive a model failure
        if not args.classical_only:
            try:
                entry["model"] = _model(args, s, seeds, configs.get(name))
            except (ConfigError, DataValidationError) as exc:  # the other series still run
                print(f"{name}: model not run: {exc}", flush=True)
                entry["model"] = {"refused": str(exc)}
            if mixed := combination.combinations(s, entry):
                entry["combination"] = mixed
        results[name] = entry
        print(f"{name}: done at {time.perf_counter() - start:.0f} s", flush=True)
        _write(args, results, command.strip())  # a run stopped midway keeps what it scored
    print(_write(args, results, command.strip()))
    print(f"total {time.perf_counter() - start:.0f} s; load average {os.getloadavg()[0]:.2f}")
    return 0


def _model(args: argparse.Namespace, s: Any, seeds: tuple[int, ...], chosen: Any) -> dict:
    return model.run_series(
        s,
        seeds=seeds,
        epochs=1 if args.quick else None,
        quick=args.quick,
        tune=args.tune,
        trials=args.trials,
        tune_timeout=args.tune_timeout,
        tune_folds=args.tune_folds,
        ablate=args.ablate,
        ablate_seeds=tuple(int(x) for x in args.ablate_seeds.split(",")),
        chosen=chosen,
    )


def _write(args: argparse.Namespace, results: dict[str, dict], command: str) -> str:
    table = markdown(results, command)
    if any("ablations" in (r.get("model") or {}) for r in results.values()):
        table += "\n\n" + ablation_markdown(results)
    if any("tune_classical" in (r.get("model") or {}) for r in results.values()):
        table += "\n\n" + verdict_markdown(results)
    if any("combination" in r for r in results.values()):
        table += "\n\n" + combination.markdown(results)
    if args.markdown:
        atomic_write(args.markdown, lambda tmp: tmp.write_text(table + "\n"))
    if args.json:
        text = json.dumps(results, indent=1, default=str).encode()
        atomic_write(args.json, lambda tmp: tmp.write_bytes(text))
    return table


if __name__ == "__main__":
    raise SystemExit(main())
