"""The one object the trainer logs through: a list of backends fed from one metrics dict.

Metric names are stable across backends and runs, grouped by prefix:
    reward/mean, reward/std, reward/errors          training rewards
    response_length/mean, response_length/clip_ratio
    actor/pg_loss, actor/kl, actor/entropy, actor/grad_norm, actor/clip_frac, actor/lr
    val/reward, val/<data_source>/reward            validation (every trainer.test_freq steps)
    timing/gen, timing/reward, timing/update, timing/sync, timing/step   seconds per phase
    perf/tokens_per_s
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.errors import TandemError
from core.tracking.loggers import ConsoleLogger, JsonlLogger, MlflowLogger, TensorBoardLogger, WandbLogger

LOGGER_NAMES = ("console", "jsonl", "tensorboard", "wandb", "mlflow")


class Tracker:
    """`Tracker(["console", "jsonl", "wandb"], run_dir, cfg)`, then `.log(metrics, step)` and `.close()`."""

    def __init__(
        self,
        loggers: list[str],
        run_dir: str | Path,
        config: Any = None,
        project: str = "tandem",
        run_name: str | None = None,
        console_every: int = 1,
    ):
        unknown = [name for name in loggers if name not in LOGGER_NAMES]
        if unknown:
            raise TandemError(f"unknown logger '{unknown[0]}' in trainer.loggers; choose from {', '.join(LOGGER_NAMES)}")
        self.run_dir = Path(run_dir)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        config_dict = _as_dict(config)
        name = run_name or self.run_dir.name
        self.loggers = [_make_logger(n, self.run_dir, config_dict, project, name, console_every) for n in loggers]

    def log(self, metrics: dict[str, Any], step: int) -> None:
        """Send `metrics` (floats, ints or 0-d tensors) for `step` to every backend."""
        values = {}
        for name, value in metrics.items():
            try:
                values[name] = float(value)
            except (TypeError, ValueError) as exc:
                raise TandemError(f"metric '{name}' is not a number: {value!r}") from exc
        for logger in self.loggers:
            logger.log(values, step)

    def locations(self) -> list[str]:
        """Where each logger writes, one line each ("metrics: RUN/metrics.jsonl", "TensorBoard: ...")."""
        return [logger.where for logger in self.loggers if getattr(logger, "where", None)]

    def rewind(self, step: int) -> None:
        """A resumed run restarts after `step`: loggers that keep a file drop what came later."""
        for logger in self.loggers:
            if hasattr(logger, "rewind"):
                logger.rewind(step)

    def close(self) -> None:
        for logger in self.loggers:
            logger.close()
        self.loggers = []


def _make_logger(name: str, run_dir: Path, config: dict, project: str, run_name: str, console_every: int):
    if name == "console":
        return ConsoleLogger(console_every)
    if name == "jsonl":
        return JsonlLogger(run_dir)
    if name == "tensorboard":
        return TensorBoardLogger(run_dir)
    if name == "wandb":
        return WandbLogger(run_dir, config, project, run_name)
    return MlflowLogger(run_dir, config, project, run_name)


def _as_dict(config: Any) -> dict[str, Any]:
    if config is None:
        return {}
    if isinstance(config, dict):
        return config
    from omegaconf import OmegaConf

    return OmegaConf.to_container(config, resolve=True)
