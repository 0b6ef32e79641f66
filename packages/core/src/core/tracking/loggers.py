"""One class per tracking backend, each taking the same `log(metrics, step)` / `close()` calls.

Optional backends import their package only when chosen; a missing package is a TandemError
that says what to install.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from core.errors import TandemError

# The console shows these, in this order, under short labels that fit an 80-column terminal;
# every metric goes to the file loggers under its full name.
CONSOLE_COLUMNS = {
    "reward/mean": "reward",
    "val/reward": "val",
    "response_length/mean": "len",
    "actor/kl": "kl",
    "actor/entropy": "entropy",
    "timing/gen": "gen_s",
    "timing/logprob": "lp_s",
    "timing/update": "upd_s",
    "perf/tokens_per_s": "tok/s",
    "train/loss": "loss",
    "val/loss": "val_loss",
}
_HEADER_EVERY = 20  # rows between repeated headers, so the column names stay on screen

log = logging.getLogger(__name__)


def _compact(value: float) -> str:
    """At most 7 characters: 3 significant digits, large counts (tokens/s) as plain integers."""
    return f"{value:.0f}" if abs(value) >= 1000 else f"{value:.3g}"


def _require(package: str, logger: str, pip_name: str):
    import importlib

    try:
        return importlib.import_module(package)
    except ImportError as exc:
        raise TandemError(f"logger '{logger}' needs the {pip_name} package: pip install {pip_name}") from exc


class ConsoleLogger:
    """A compact table: step 1 (so a slow run shows its numbers at once), then one row per `every` steps;
    fixed-width columns, the header repeated now and then. A column, once seen, stays (blank in rows without
    it): validation's `val` comes and goes without a new header each time."""

    def __init__(self, every: int = 1, console: Console | None = None):
        self.every = max(1, every)
        self.console = console or Console()
        if not self.console.is_terminal:  # a log file has no width; 80 columns would cut the table
            self.console.width = max(self.console.width, 100)
        self._columns: list[str] = []
        self._rows_since_header = 0

    def log(self, metrics: dict[str, float], step: int) -> None:
        if step % self.every and step != 1:
            return
        columns = [name for name in CONSOLE_COLUMNS if name in metrics or name in self._columns]
        show_header = columns != self._columns or self._rows_since_header >= _HEADER_EVERY
        self._columns, self._rows_since_header = columns, 0 if show_header else self._rows_since_header + 1
        table = Table(box=None, show_header=show_header, pad_edge=False, header_style="bold")
        table.add_column("step", width=5, justify="right", no_wrap=True)
        for name in columns:
            label = CONSOLE_COLUMNS[name]  # the whole label: "val_loss" printed as "val_lo…" in 7 columns
            table.add_column(label, width=max(7, len(label)), justify="right", no_wrap=True)
        table.add_row(str(step), *(_compact(metrics[name]) if name in metrics else "" for name in columns))
        self.console.print(table)

    def close(self) -> None:
        pass


class JsonlLogger:
    """RUN_DIR/metrics.jsonl: {"step": s, "time": unix seconds, metric: value, ...} per line, appended."""

    def __init__(self, run_dir: Path, name: str = "metrics.jsonl"):
        self.path = run_dir / name
        self.where = f"{name.removesuffix('.jsonl')}: {self.path}"
        self._file = self.path.open("a")

    def log(self, metrics: dict[str, float], step: int) -> None:
        self._file.write(json.dumps({"step": step, "time": time.time(), **metrics}) + "\n")
        self._file.flush()  # a crashed run keeps every step it finished

    def rewind(self, step: int) -> None:
        """Forget the lines after `step`: a run resumed from step's checkpoint logs them again.

        A torn line (the process died mid-write: disk full, power loss) is dropped with a warning,
        so it never makes a run unresumable."""
        self._file.close()
        kept = []
        for number, line in enumerate(self.path.read_text(errors="replace").splitlines(keepends=True), start=1):
            try:
                record = json.loads(line)
            except json.JSONDecodeError:
                log.warning("%s: dropping line %d, which is not complete JSON (torn write)", self.path, number)
                continue
            if record["step"] <= step:
                kept.append(line if line.endswith("\n") else line + "\n")
        staging = self.path.with_suffix(".jsonl.tmp")
        staging.write_text("".join(kept))
        staging.replace(self.path)
        self._file = self.path.open("a")

    def close(self) -> None:
        self._file.close()


class TensorBoardLogger:
    """Event files under RUN_DIR/tensorboard (`tensorboard --logdir RUN_DIR`)."""

    def __init__(self, run_dir: Path):
        _require("tensorboard", "tensorboard", "tensorboard")
        from torch.utils.tensorboard import SummaryWriter

        self.writer = SummaryWriter(log_dir=str(run_dir / "tensorboard"))
        self.where = f"TensorBoard: tensorboard --logdir {run_dir / 'tensorboard'}"

    def log(self, metrics: dict[str, float], step: int) -> None:
        for name, value in metrics.items():
            self.writer.add_scalar(name, value, step)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()


class WandbLogger:
    """A Weights & Biases run in RUN_DIR/wandb; WANDB_MODE=offline works without a network."""

    def __init__(self, run_dir: Path, config: dict[str, Any], project: str, name: str):
        self.wandb = _require("wandb", "wandb", "wandb")
        self.run = self.wandb.init(project=project, name=name, dir=str(run_dir), config=config, reinit="create_new")
        url = getattr(self.run, "url", None)  # None offline: then the local run folder is the place to look
        self.where = f"W&B: {url}" if url else f"W&B (offline): {self.run.dir} (wandb sync to upload)"

    def log(self, metrics: dict[str, float], step: int) -> None:
        self.run.log(metrics, step=step)

    def close(self) -> None:
        self.run.finish()
        # finish() can return before wandb's service process has written the run's records (seen
        # on a busy 2-core machine: an offline .wandb file holding only its header); tearing the
        # service down waits for it, so a closed offline run is complete on disk
        self.wandb.teardown()


class MlflowLogger:
    """An MLflow run; the store is MLFLOW_TRACKING_URI, or a local SQLite file RUN_DIR/mlflow.db."""

    PARAMS_PER_CALL = 100  # MLflow's log_batch limit

    def __init__(self, run_dir: Path, config: dict[str, Any], project: str, name: str):
        pip_name = "mlflow-skinny sqlalchemy alembic"
        _require("sqlalchemy", "mlflow", pip_name)
        tracking = _require("mlflow.tracking", "mlflow", pip_name)
        from mlflow.entities import Param

        uri = os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{(run_dir / 'mlflow.db').resolve()}"
        self.client = tracking.MlflowClient(tracking_uri=uri)
        experiment = self.client.get_experiment_by_name(project)
        experiment_id = experiment.experiment_id if experiment else self.client.create_experiment(project)
        self.run_id = self.client.create_run(experiment_id, run_name=name).info.run_id
        self.where = f"MLflow: run {self.run_id} in {uri} (mlflow ui --backend-store-uri {uri})"
        params = [Param(key, str(value)[:6000]) for key, value in flatten(config).items()]
        for start in range(0, len(params), self.PARAMS_PER_CALL):
            self.client.log_batch(self.run_id, params=params[start : start + self.PARAMS_PER_CALL])

    def log(self, metrics: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        self.client.log_batch(self.run_id, metrics=[Metric(k, v, now, step) for k, v in metrics.items()])

    def close(self) -> None:
        self.client.set_terminated(self.run_id)


def flatten(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}"""
    flat = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, f"{name}."))
        else:
            flat[name] = value
    return flat
