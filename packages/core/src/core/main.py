"""Tandem's RL entry point: `python -m core.main [group=option ...] [+backend=NAME] [key=value ...]`.

Without `+backend=NAME` the best available backend is detected (rocm, then cuda, then cpu) and
added to the command line before Hydra composes the config, so `--cfg job` shows what will run.
Task presets live in `conf/experiment/` (`+experiment=NAME`).
"""

from __future__ import annotations

import logging
import sys
from typing import Callable

import hydra
from omegaconf import DictConfig

from core.backends.base import Backend
from core.config.cli_lists import single_values_as_lists
from core.config.known_keys import refuse_unknown_keys
from core.config.schema import TandemConfig, register_schemas
from core.errors import exit_on_user_error
from core.plugins.manager import backend_from_argv, detect_backend, load_backend, require_backend

log = logging.getLogger("tandem")
register_schemas()


@exit_on_user_error
def choose_backend(argv: list[str]) -> list[str]:
    """Check a requested backend is installed, or add the detected one; returns the new argv."""
    requested = backend_from_argv(argv)
    if requested is None and {"--help", "-h"} & set(argv):
        return argv  # no backend chosen: the help lists every installed backend's option
    if requested is None:
        # beside the other overrides: argparse takes Hydra's overrides as one run of positionals,
        # so one appended after `--cfg job` would be refused as an unrecognised argument
        at = next((i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")), 0)
        return [*argv[:at], f"+backend={detect_backend().name}", *argv[at:]]
    load_backend(requested)  # an unknown name fails here, listing the installed ones
    return argv


def setup_logging() -> None:
    """Rich's columns on a terminal; piped to a file or a CI log, plain lines (rich would wrap them at 80
    columns and split paths) with their time."""
    from core.tracking.verbosity import quiet_libraries

    if sys.stderr.isatty():
        from rich.logging import RichHandler

        logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    else:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    quiet_libraries()  # vLLM/Ray/transformers INFO detail only with TANDEM_VERBOSE=1


def launch(config_path: str, config_name: str, run: Callable[[DictConfig], object], schema: type = TandemConfig) -> None:
    """Choose the backend, then let Hydra compose `config_name` (typed by `schema`) from `config_path` and call
    `run`. A single value given to a list key is a one-item list (core/config/cli_lists.py)."""
    sys.argv = [sys.argv[0], *single_values_as_lists(choose_backend(sys.argv[1:]), schema)]
    if {"--cfg", "-c"} & set(sys.argv):  # Hydra prints and returns without calling the task: check here
        exit_on_user_error(check_printed_config)(config_path, config_name, sys.argv[1:], schema)

    @hydra.main(version_base=None, config_path=config_path, config_name=config_name)
    def _hydra_main(cfg: DictConfig) -> None:
        setup_logging()
        exit_on_user_error(refuse_unknown_keys)(cfg, schema)
        run(cfg)

    _hydra_main()


def check_printed_config(config_path: str, config_name: str, argv: list[str], schema: type) -> None:
    """What a run would refuse before starting, refused under `--cfg job` too: unknown keys, and
    `backend.settings` against the backend's own schema."""
    from hydra import compose, initialize_config_module
    from hydra.errors import HydraException

    from core.config.backend_settings import check_backend_settings

    overrides = [arg for arg in argv if "=" in arg and not arg.startswith(("-", "hydra.", "hydra/"))]
    try:
        with initialize_config_module(config_module=config_path.removeprefix("pkg://"), version_base=None):
            cfg = compose(config_name, overrides=overrides)
    except HydraException:
        return  # Hydra's own composition error follows, as it would for a run

    refuse_unknown_keys(cfg, schema)
    check_backend_settings(cfg, load_backend(cfg.backend.name))


def prepare_backend(cfg: DictConfig) -> Backend:
    """Before anything starts: value ranges, the backend usable here, its settings typed and checked."""
    from core.algorithms.spec import check_algorithm_config
    from core.config.backend_settings import check_backend_settings
    from core.config.ranges import check_ranges

    check_ranges(cfg)
    if "algorithm" in cfg:  # core.eval's and RL's configs; SFT's has none
        check_algorithm_config(cfg.algorithm)
    check_backend_settings(cfg, load_backend(cfg.backend.name))  # a typo is named even where it cannot run
    backend, availability = require_backend(cfg.backend.name)
    log.info("backend %s: %s", backend.name, availability.reason)
    return backend


@exit_on_user_error
def run(cfg: DictConfig) -> dict:
    from core.rl.loop import train

    prepare_backend(cfg)
    summary = train(cfg)
    log.info(
        "done: %d steps in %.1f s; reward %.3f -> %.3f (mean of the first -> last tenth of the steps)",
        summary["steps"], summary["wall_s"], summary["reward_start"], summary["reward_end"],
    )
    if "eval" in summary:  # printed, not logged: the log handler would wrap the table's lines
        log.info("held-out evaluation (greedy; exact and format-insensitive), also in RUN/eval.md:")
        print(summary["eval"], flush=True)
    log_locations(summary)
    return summary


def log_locations(summary: dict) -> None:
    """Where the run's files went: metrics, trackers, report, final model (one line each)."""
    places = [*summary.get("locations", []), *([f"final model: {summary['final_model']}"] if "final_model" in summary else [])]
    if places:
        log.info("written:\n  %s", "\n  ".join(places))


def main() -> None:
    launch("pkg://core.conf", "config", run)


if __name__ == "__main__":
    main()
