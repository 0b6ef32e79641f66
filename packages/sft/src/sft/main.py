"""Tandem's SFT entry point: `python -m sft.main [group=option ...] [+backend=NAME] [key=value ...]`.

Backend detection, logging and error handling are core.main's, so SFT and RL behave alike:
without `+backend=NAME` the best available backend is detected and added to the command line.
Several ranks: `python -m sft.main trainer.launcher=ray trainer.n_gpus_per_node=N [trainer.nnodes=M ...]`
(one Ray actor per GPU), or `torchrun --nproc_per_node N -m sft.main ...` (one loop per rank).
"""

from __future__ import annotations

import logging

from omegaconf import DictConfig

from core.errors import exit_on_user_error
from core.main import launch, log_locations, prepare_backend
from sft.config import SFTConfig, register_sft_schemas

log = logging.getLogger("tandem")
register_sft_schemas()


@exit_on_user_error
def run(cfg: DictConfig) -> dict:
    from sft.loop import train

    prepare_backend(cfg)
    summary = train(cfg)
    reward = (f"; validation reward {summary['val/reward_start']:.3f} -> {summary['val/reward_end']:.3f}"
              if "val/reward_start" in summary else "")
    if "val/exact_match_start" in summary:
        reward += f", exact match {summary['val/exact_match_start']:.3f} -> {summary['val/exact_match_end']:.3f}"
    log.info(
        "done: %d steps in %.1f s; validation loss %.3f -> %.3f%s (first -> last validation)",
        summary["steps"], summary["wall_s"], summary.get("val/loss_start", float("nan")),
        summary.get("val/loss_end", float("nan")), reward,
    )
    if "report" in summary:
        log.info("%s", summary["report"])
    log_locations(summary)
    return summary


def main() -> None:
    launch("pkg://sft.conf", "sft", run, schema=SFTConfig)


if __name__ == "__main__":
    main()
