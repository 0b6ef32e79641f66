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

from core.config.schema import register_schemas
from core.errors import exit_on_user_error
from core.plugins.manager import detect_backend, get_plugin_manager, installed_backends, require_backend

log = logging.getLogger("tandem")
register_schemas()


def backend_from_argv(argv: list[str]) -> str | None:
    """The NAME of a `+backend=NAME` / `backend=NAME` / `++backend=NAME` override, if any."""
    for arg in argv:
        key, sep, value = arg.partition("=")
        if sep and key.lstrip("+~") == "backend":
            return value
    return None


@exit_on_user_error
def choose_backend(argv: list[str]) -> list[str]:
    """Check a requested backend is installed, or add the detected one; returns the new argv."""
    pm = get_plugin_manager()
    requested = backend_from_argv(argv)
    if requested is None:
        # beside the other overrides: argparse takes Hydra's overrides as one run of positionals,
        # so one appended after `--cfg job` would be refused as an unrecognised argument
        at = next((i for i, arg in enumerate(argv) if "=" in arg and not arg.startswith("-")), 0)
        return [*argv[:at], f"+backend={detect_backend(pm)}", *argv[at:]]
    installed = installed_backends(pm)
    if requested not in installed:
        from core.errors import TandemError

        raise TandemError(f"unknown backend '{requested}'; installed backends: {', '.join(installed)}")
    return argv


def setup_logging() -> None:
    from rich.logging import RichHandler

    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[RichHandler(show_path=False)])
    import transformers

    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def launch(config_path: str, config_name: str, run: Callable[[DictConfig], object]) -> None:
    """Choose the backend, then let Hydra compose `config_name` from `config_path` and call `run`."""
    sys.argv = [sys.argv[0], *choose_backend(sys.argv[1:])]

    @hydra.main(version_base=None, config_path=config_path, config_name=config_name)
    def _hydra_main(cfg: DictConfig) -> None:
        setup_logging()
        run(cfg)

    _hydra_main()


@exit_on_user_error
def run(cfg: DictConfig) -> dict:
    from core.config.ranges import check_ranges
    from core.trainer.loop import train

    check_ranges(cfg)
    availability = require_backend(get_plugin_manager(), cfg.backend.name)
    log.info("backend %s: %s", cfg.backend.name, availability.reason)
    summary = train(cfg)
    log.info(
        "done: %d steps in %.1f s; reward %.3f -> %.3f%s",
        summary["steps"], summary["wall_s"], summary["reward_start"], summary["reward_end"],
        f"; final model: {summary['final_model']}" if "final_model" in summary else "",
    )
    return summary


def main() -> None:
    launch("pkg://core.conf", "config", run)


if __name__ == "__main__":
    main()
