"""`python -m core.eval [MODEL_OR_RUN ...] [key=value ...]`: the held-out table for models and finished runs.

    python -m core.eval runs/seed0 runs/seed1 runs/seed2          # base + each run's final model + their mean
    python -m core.eval +experiment=smollm2_arithmetic            # the preset's base model alone
    python -m core.eval +experiment=smollm2_arithmetic /my/model eval.pass_k=8

A run directory brings its own config (task, prompt format, eval sets) and its `final/` model; the base
model is the config's `model.path`, always evaluated first, the same way, in the same table. Without a run
the config is composed like `core.main`'s from the key=value overrides. Prints a markdown table and, with
`--json PATH`, writes every figure and a few replies per set.
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

from omegaconf import OmegaConf

from core.errors import TandemError, exit_on_user_error
from core.eval.runner import evaluate
from core.eval.scoring import question_marker
from core.eval.sets import eval_sets
from core.eval.table import markdown, mean_and_spread

log = logging.getLogger("tandem")
RUN_CONFIG = "config.json"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    from core.main import choose_backend, prepare_backend, setup_logging

    argv = list(sys.argv[1:] if argv is None else argv)
    json_path = _take_option(argv, "--json")
    targets = [arg for arg in argv if "=" not in arg]
    overrides = [arg for arg in argv if "=" in arg]
    setup_logging()
    runs = [Path(t) for t in targets if (Path(t) / RUN_CONFIG).is_file()]
    cfg = _run_config(runs, overrides) if runs else _composed_config(choose_backend(overrides))
    backend = prepare_backend(cfg)
    models = [(str(cfg.model.path), "base")] + [(_final_model(t), t) for t in targets]
    rows, trained = _evaluate_models(cfg, backend, models)
    if len(trained) > 1:
        rows.append((f"trained, mean ± sd of {len(trained)}", mean_and_spread(trained)))
    table = markdown(rows)
    print(table)
    if json_path:
        Path(json_path).write_text(json.dumps({label: metrics for label, metrics in rows}, indent=1, default=list))
        print(f"written: {json_path}")


def _evaluate_models(cfg, backend, models: list[tuple[str, str]]):
    """(table rows, the trained models' metrics): every model in `models` ((path, label), the base first) on the
    same sets, each by an engine of its own that loads its real weights."""
    from core.models.builtin import resolve_model_path
    from core.rollout.base import EngineSettings, EngineTarget
    from core.trainer.setup import load_tokenizer

    _, tokenizer = load_tokenizer(cfg.model)  # trained models keep the base model's tokenizer
    sets = eval_sets(cfg.data, cfg.eval, tokenizer)
    if not sets:
        raise TandemError(f"data.task={cfg.data.task} has no held-out questions to evaluate on; give data.val_files")
    options = (int(cfg.eval.max_tokens or cfg.rollout.max_tokens), int(cfg.eval.pass_k), float(cfg.eval.temperature),
               question_marker(cfg.data.prompt_template), tuple(cfg.rollout.stop))
    rows, trained = [], []
    for path, label in models:
        engine_cfg = OmegaConf.merge(cfg, {"model": {"path": path},
                                           "rollout": {"load_format": "auto", "free_cache_engine": False}})
        engine = backend.make_rollout_engine(EngineSettings.from_config(engine_cfg),
                                             EngineTarget.from_config(engine_cfg, resolve_model_path(path)))
        try:
            metrics = evaluate(engine, sets, tokenizer, *options).metrics
        finally:
            engine.close()
        log.info("evaluated %s", path)
        rows.append((f"base: {path}" if label == "base" else label, metrics))
        if label != "base":
            trained.append(metrics)
    return rows, trained


def _run_config(runs: list[Path], overrides: list[str]):
    """The first run's saved config with `overrides` on top; every run must share its data and eval sections."""
    configs = [json.loads((run / RUN_CONFIG).read_text()) for run in runs]
    for run, config in zip(runs[1:], configs[1:]):
        for section in ("data", "eval", "model"):
            if config.get(section) != configs[0].get(section):
                raise TandemError(f"{run} has another {section} config than {runs[0]}; evaluate them apart")
    from omegaconf.errors import OmegaConfBaseException

    try:
        cfg = OmegaConf.merge(OmegaConf.structured(_schema()), configs[0])
        return OmegaConf.merge(cfg, OmegaConf.from_dotlist([o.lstrip("+") for o in overrides]))
    except OmegaConfBaseException as exc:
        raise TandemError(f"{runs[0]}/{RUN_CONFIG} with {' '.join(overrides) or 'no overrides'}: "
                          f"{str(exc).splitlines()[0]}") from None


def _composed_config(overrides: list[str]):
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException
    from omegaconf.errors import OmegaConfBaseException

    from core.config.cli_lists import single_values_as_lists
    from core.config.known_keys import refuse_unknown_keys

    try:
        with initialize_config_module(config_module="core.conf", version_base=None):
            cfg = compose("config", overrides=single_values_as_lists(overrides, _schema()))
    except (HydraException, OmegaConfBaseException) as exc:
        cause = exc.__cause__ if isinstance(exc.__cause__, OmegaConfBaseException) else None
        detail = f" ({str(cause).splitlines()[0]})" if cause else ""
        raise TandemError(f"{str(exc).splitlines()[0]}{detail}") from None
    refuse_unknown_keys(cfg, _schema())
    return cfg


def _final_model(target: str) -> str:
    path = Path(target)
    if (path / RUN_CONFIG).is_file():
        if not (path / "final" / "config.json").is_file():
            raise TandemError(f"{target} is a run without a final model (trainer.save_model was off, or it stopped early)")
        return str(path / "final")
    return target


def _take_option(argv: list[str], name: str) -> str | None:
    if name not in argv:
        return None
    at = argv.index(name)
    if at + 1 >= len(argv):
        raise TandemError(f"{name} needs a path")
    value = argv[at + 1]
    del argv[at:at + 2]
    return value


def _schema():
    from core.config.schema import TandemConfig

    return TandemConfig
