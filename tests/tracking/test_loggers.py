"""Each logger writes what it should; optional backends are skipped with a reason when not installed."""

import json
import sys

import pytest
import torch
from rich.console import Console

from core.errors import TandemError
from core.tracking.loggers import ConsoleLogger, flatten
from core.tracking.tracker import Tracker

CONFIG = {"trainer": {"lr": 0.001, "loggers": ["jsonl"]}, "data": {"max_prompt_length": 256}}
STEPS = [
    {"reward/mean": 0.25, "actor/kl": 0.0, "timing/step": 1.5},
    {"reward/mean": 0.5, "actor/kl": torch.tensor(0.01), "timing/step": 1.25},
]


def log_steps(tracker):
    for step, metrics in enumerate(STEPS, start=1):
        tracker.log(metrics, step)
    tracker.close()


def test_jsonl_one_object_per_step_appended(tmp_path):
    log_steps(Tracker(["jsonl"], tmp_path, CONFIG))
    log_steps(Tracker(["jsonl"], tmp_path, CONFIG))  # a resumed run appends
    lines = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [line["step"] for line in lines] == [1, 2, 1, 2]
    assert lines[1]["reward/mean"] == 0.5 and lines[1]["actor/kl"] == pytest.approx(0.01)  # tensor -> float
    assert lines[0]["time"] <= lines[1]["time"]


def test_console_table_is_compact_and_aligned():
    console = Console(record=True, width=120)
    logger = ConsoleLogger(every=2, console=console)
    for step in range(1, 5):
        logger.log({"reward/mean": step / 10, "actor/kl": 0.001, "other/metric": 9.0}, step)
    lines = [line for line in console.export_text().splitlines() if line.strip()]
    assert len(lines) == 4  # header once, then step 1 (the first numbers at once), 2 and 4 only
    assert lines[0].split() == ["step", "reward", "kl"]  # short labels; other/metric goes to files only
    assert lines[1].split() == ["1", "0.1", "0.001"]
    assert lines[2].split() == ["2", "0.2", "0.001"] and lines[3].split() == ["4", "0.4", "0.001"]
    assert len({len(line.rstrip()) for line in lines[1:]}) == 1


def test_console_repeats_the_header_when_a_column_first_appears_only():
    """Validation every other step: the `val` column comes once with a header, then stays, blank between."""
    console = Console(record=True, width=120)
    logger = ConsoleLogger(console=console)
    logger.log({"reward/mean": 0.1}, 1)
    for step in range(2, 7):
        logger.log({"reward/mean": 0.1, **({"val/reward": 0.3} if step % 2 == 0 else {})}, step)
    lines = [line.split() for line in console.export_text().splitlines() if line.strip()]
    headers = [line for line in lines if line[:1] == ["step"]]
    assert headers == [["step", "reward"], ["step", "reward", "val"]]
    assert lines[-2:] == [["5", "0.1"], ["6", "0.1", "0.3"]]


def test_console_labels_are_never_cut():
    console = Console(record=True, width=120)
    ConsoleLogger(console=console).log({"train/loss": 1.5, "val/loss": 1.25}, 1)
    assert console.export_text().splitlines()[0].split() == ["step", "loss", "val_loss"]


def test_tracker_errors():
    with pytest.raises(TandemError, match="unknown logger 'neptune' in trainer.loggers; choose from console"):
        Tracker(["neptune"], "unused")
    tracker = Tracker([], "/tmp")
    with pytest.raises(TandemError, match="metric 'reward/mean' is not a number: 'high'"):
        tracker.log({"reward/mean": "high"}, 1)


def test_missing_package_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "wandb", None)  # import wandb now raises ImportError
    with pytest.raises(TandemError, match="logger 'wandb' needs the wandb package: pip install wandb"):
        Tracker(["wandb"], tmp_path, CONFIG)


def test_flatten():
    assert flatten(CONFIG) == {"trainer.lr": 0.001, "trainer.loggers": ["jsonl"], "data.max_prompt_length": 256}


def test_tensorboard_event_file_is_readable(tmp_path):
    pytest.importorskip("tensorboard", reason="pip install tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    log_steps(Tracker(["tensorboard"], tmp_path, CONFIG))
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert "reward/mean" in events.Tags()["scalars"]
    assert [(e.step, e.value) for e in events.Scalars("reward/mean")] == [(1, 0.25), (2, 0.5)]


def test_wandb_offline_run_directory(tmp_path, monkeypatch):
    pytest.importorskip("wandb", reason="pip install wandb")
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    tracker = Tracker(["wandb"], tmp_path, CONFIG, run_name="unit")
    assert tracker.loggers[0].run.config["data"]["max_prompt_length"] == 256
    log_steps(tracker)
    (run_dir,) = (tmp_path / "wandb").glob("offline-run-*")
    (run_log,) = run_dir.glob("run-*.wandb")  # what `wandb sync` uploads later
    assert b"reward/mean" in run_log.read_bytes() and b"max_prompt_length" in run_log.read_bytes()


def test_mlflow_run_in_local_store(tmp_path, monkeypatch):
    pytest.importorskip("mlflow", reason="pip install mlflow-skinny sqlalchemy alembic")
    pytest.importorskip("sqlalchemy", reason="pip install mlflow-skinny sqlalchemy alembic")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    tracker = Tracker(["mlflow"], tmp_path, CONFIG, project="tests", run_name="unit")
    (logger,) = tracker.loggers
    log_steps(tracker)
    assert (tmp_path / "mlflow.db").is_file()
    history = logger.client.get_metric_history(logger.run_id, "reward/mean")
    assert [(m.step, m.value) for m in history] == [(1, 0.25), (2, 0.5)]
    run = logger.client.get_run(logger.run_id)
    assert run.data.params["data.max_prompt_length"] == "256" and run.info.status == "FINISHED"



def test_rewind_drops_a_torn_last_line(tmp_path, caplog):
    import json as _json

    from core.tracking.loggers import JsonlLogger

    path = tmp_path / "metrics.jsonl"
    path.write_text(_json.dumps({"step": 1, "x": 1.0}) + "\n" + _json.dumps({"step": 2, "x": 2.0}) + "\n" + '{"step": 3, "x"')
    logger = JsonlLogger(tmp_path)
    with caplog.at_level("WARNING"):
        logger.rewind(2)
    logger.log({"x": 3.5}, 3)
    logger.close()
    assert [_json.loads(line)["step"] for line in path.read_text().splitlines()] == [1, 2, 3]
    assert "torn write" in caplog.text
