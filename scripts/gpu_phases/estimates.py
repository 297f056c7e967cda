"""How long each phase of the GPU check needs: from what earlier phases measured where they
did (throughput, the data's sizes, the sweeps' run overhead), else from the Config's guesses.
The parent skips a phase whose least useful work cannot finish in what is left of the budget;
the phases plan their own work (configs, sweeps, epochs) by the same estimates."""

from __future__ import annotations

from .config import Config


def estimate(name: str, config: Config, summary: dict) -> tuple[float, float]:
    """(least useful, everything) seconds that phase ``name`` needs, from what earlier phases
    measured where they did, else from ``config``'s guesses."""
    if name == "environment":
        return config.environment_s, config.environment_s
    if name == "throughput":
        costs = [bench_estimate(item, config, {}) for item in config.bench]
        return costs[0], sum(costs)
    if name == "data":
        return config.data_s, config.data_s
    if name == "runs_per_gpu":
        costs = [sweep_estimate(k, config, summary) for k in config.runs_per_gpu]
        return costs[0], sum(costs)
    if name == "precision":
        fewest, most = config.precision_epochs
        return (2 * run_estimate(config.precision_backbone, fewest, config, summary),
                2 * run_estimate(config.precision_backbone, most, config, summary))
    if name == "hrnet_fold":
        fewest, most = config.fold_epochs
        return (run_estimate(config.fold_backbone, fewest, config, summary),
                run_estimate(config.fold_backbone, most, config, summary))
    raise KeyError(name)


def bench_estimate(item, config: Config, measured: dict) -> float:
    """Seconds of one throughput config: a process start, model and steps (measured for the
    same backbone when one ran already), plus compilation."""
    backbone, _, compiled = item
    base = measured.get(backbone, config.process_start_s + 8.0)
    return base + (config.compile_s.get(backbone, 60.0) if compiled else 0.0)


def _figures(summary: dict, name: str) -> dict:
    """What phase ``name`` measured (also a failed one: its items that ran are there)."""
    phase = next(p for p in summary["phases"] if p["name"] == name)
    return phase.get("figures", {})


def epoch_seconds(backbone: str, config: Config, summary: dict) -> float:
    """One epoch of a fold (train + OOF eval) of ``backbone``: from its measured throughput
    (eager, the default precision) and the data's sizes, else config's guess."""
    data = _figures(summary, "data")
    n_train, n_oof = data.get("fold_train_samples"), data.get("fold_oof_samples")
    for result in _figures(summary, "throughput").get("configs", []):
        if (result.get("backbone") == backbone and result.get("amp") and not result.get("compiled")
                and result.get("train_samples_per_s") and n_train):
            return (n_train / result["train_samples_per_s"]
                    + n_oof / result["infer_samples_per_s"])
    return config.epoch_s.get(backbone, 5.0)


def run_overhead(config: Config, summary: dict) -> float:
    """A papermill run's seconds beyond its epochs: measured by the sweeps, else a guess."""
    for result in _figures(summary, "runs_per_gpu").get("sweeps", []):
        if result.get("K") == 1 and result.get("run_overhead_s"):
            return result["run_overhead_s"]
    return config.run_overhead_s


def run_estimate(backbone: str, epochs: int, config: Config, summary: dict) -> float:
    return run_overhead(config, summary) + epochs * epoch_seconds(backbone, config, summary)


def sweep_estimate(k: int, config: Config, summary: dict) -> float:
    """A sweep of K runs sharing one device: cluster start, then K runs side by side, each
    beside the first assumed to slow them all by config.sharing_slowdown (a guess)."""
    one = run_estimate(config.sweep_backbone, config.sweep_epochs, config, summary)
    return config.cluster_s + one * (1 + config.sharing_slowdown * (k - 1))
