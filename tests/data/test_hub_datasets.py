"""Hub dataset names where a data path is expected (core.hub): `prepare --input openai/gsm8k/main` and
`data.train_files=org/name/file.parquet`, read from the local HF cache, offline; a local path always wins."""

import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from core.data.prepare import prepare
from core.data.rl_dataset import read_records
from core.errors import TandemError

RAW = "tests/fixtures/gsm8k_raw"


@pytest.fixture
def hub_cache(tmp_path, monkeypatch):
    """An offline HF cache holding the dataset `acme/gsm8k` in the hub's layout (main/{train,test}-*.parquet)."""
    cache = tmp_path / "hub"
    repo = cache / "datasets--acme--gsm8k"
    snapshot = repo / "snapshots" / "0123abcd"
    (snapshot / "main").mkdir(parents=True)
    for split in ("train", "test"):
        raw = [json.loads(line) for line in open(f"{RAW}/{split}.jsonl")]
        pq.write_table(pa.Table.from_pylist(raw), snapshot / "main" / f"{split}-00000-of-00001.parquet")
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text("0123abcd")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(cache))
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_OFFLINE", True)
    monkeypatch.chdir(tmp_path)
    return snapshot


def test_prepare_reads_a_hub_dataset_from_the_cache(hub_cache, tmp_path):
    assert prepare("gsm8k", "acme/gsm8k/main", tmp_path / "out") == {"train": 8, "test": 4}


def test_a_data_file_inside_a_hub_dataset(hub_cache):
    rows = read_records("acme/gsm8k/main/test-00000-of-00001.parquet")
    assert len(rows) == 4 and "question" in rows[0]


def test_a_hub_dataset_not_cached_offline_is_one_line_naming_it(hub_cache):
    with pytest.raises(TandemError, match="data file 'acme/absent/train.parquet': no local path of that name, "
                                          "and not in the Hugging Face cache .* HF_HUB_OFFLINE"):
        read_records("acme/absent/train.parquet")
    with pytest.raises(TandemError, match="the cached Hub dataset acme/gsm8k has no 'main/validation.parquet'"):
        read_records("acme/gsm8k/main/validation.parquet")


def test_a_local_folder_of_that_name_makes_it_a_local_typo(hub_cache, tmp_path):
    (tmp_path / "acme").mkdir()  # ./acme exists: "acme/gsm8k/..." is a local path that is not there
    with pytest.raises(TandemError, match="data file not found: acme/gsm8k/main/test-00000-of-00001.parquet"):
        read_records("acme/gsm8k/main/test-00000-of-00001.parquet")


def test_a_two_part_name_is_a_local_file_not_a_hub_repo(hub_cache, monkeypatch):
    """"out/train.parquet" could name a Hub repo, but a repo is no file: read as the local typo it is, no lookup."""
    monkeypatch.setattr("core.hub.hub_snapshot", lambda *args, **kwargs: pytest.fail("looked on the Hub"))
    with pytest.raises(TandemError, match="data file not found: out/train.parquet"):
        read_records("out/train.parquet")
