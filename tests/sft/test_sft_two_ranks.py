"""Two CPU ranks (gloo, FSDP2): validation is split over the ranks and gathered back in dataset order."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest
import torch.multiprocessing as mp

sys.path.insert(0, str(Path(__file__).parents[1] / "distributed"))
from dist_utils import free_port  # noqa: E402

pytestmark = pytest.mark.timeout(180)


def _rank_main(rank: int, world_size: int, port: int, out_dir: str) -> None:
    import faulthandler

    faulthandler.dump_traceback_later(150, exit=True)  # a hung collective prints every stack and exits
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE=str(world_size))
    from sft.loop import train
    from sft_fakes import tiny_run

    summary = train(tiny_run(out_dir, "data.num_val=5", "trainer.batch_size=8", "trainer.dist_timeout_s=120",
                             "trainer.save_model=true"))
    Path(out_dir, f"summary_rank{rank}.json").write_text(json.dumps(summary))


def test_two_ranks_split_validation_and_gather_it_in_order(tmp_path, tiny_model_dir, tiny_tokenizer):
    mp.spawn(_rank_main, args=(2, free_port(), str(tmp_path)), nprocs=2, join=True)
    records = [json.loads(line) for line in (tmp_path / "validation" / "step_000004.jsonl").read_text().splitlines()]
    # 5 prompts: rank 0 generates the first 3, rank 1 the last 2; the file keeps dataset order
    assert [r["rank"] for r in records] == [0, 0, 0, 1, 1]
    from sft.dataset import load_data
    from sft_fakes import tiny_run

    _, val_set = load_data(tiny_run(tmp_path, "data.num_val=5"), tiny_tokenizer)
    assert [r["prompt"] for r in records] == [e.prompt_text for e in val_set]
    summaries = [json.loads((tmp_path / f"summary_rank{r}.json").read_text()) for r in (0, 1)]
    assert summaries[0]["val/loss_end"] == pytest.approx(summaries[1]["val/loss_end"])  # reduced over ranks
    assert (tmp_path / "final" / "model.safetensors").is_file()  # shards gathered into one HF directory
