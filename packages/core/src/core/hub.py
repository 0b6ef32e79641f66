"""Hugging Face Hub names where a local path is expected, as a user of TRL or verl writes them:
`model.path=Qwen/Qwen2.5-0.5B-Instruct`, `data.train_files=org/dataset/path/in/repo.parquet`,
`python -m core.data.prepare gsm8k --input openai/gsm8k/main`.

The local HF cache ($HF_HUB_CACHE) is read first, so an offline machine with a warm cache just works;
what is missing is fetched unless HF_HUB_OFFLINE is set, in which case the error says so. A local path
of the same name always wins.
"""

from __future__ import annotations

import re
from pathlib import Path

from core.errors import TandemError

REPO_ID = r"[A-Za-z0-9][\w.-]*/[\w.-]+"  # "org/name", not a path that starts with / . or ~
HUB_NAME = re.compile(REPO_ID)
HUB_PATH = re.compile(rf"(?P<repo>{REPO_ID})(?:/(?P<inside>[\w.=/-]+))?")  # org/name[/path/in/repo]


def hub_snapshot(repo_id: str, what: str, repo_type: str = "model", patterns: list[str] | None = None,
                 wanted: str | None = None) -> Path:
    """The cached snapshot directory of `repo_id`, holding `wanted` (a path inside it) if given; fetched
    (`patterns` only) when not cached and the hub is on. `what` names the setting in errors ("model.path 'x'")."""
    from huggingface_hub import constants, snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        snapshot = Path(snapshot_download(repo_id, repo_type=repo_type, local_files_only=True))
    except LocalEntryNotFoundError:
        snapshot = None
    if snapshot is not None and (wanted is None or (snapshot / wanted).exists()):
        return snapshot
    if snapshot is not None and constants.HF_HUB_OFFLINE:
        raise TandemError(f"{what}: the cached Hub {repo_type} {repo_id} has no '{wanted}' ({snapshot}), and "
                          "HF_HUB_OFFLINE is set")
    if constants.HF_HUB_OFFLINE:
        raise TandemError(f"{what}: no local path of that name, and not in the Hugging Face cache "
                          f"({constants.HF_HUB_CACHE}) while HF_HUB_OFFLINE is set; download it where there is a "
                          f"network (hf download {repo_id}{' --repo-type dataset' if repo_type == 'dataset' else ''})"
                          ", or give a local path")
    try:
        return Path(snapshot_download(repo_id, repo_type=repo_type, allow_patterns=patterns))
    except Exception as exc:  # noqa: BLE001 - network, auth, a missing repo: one line, whatever the cause
        reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise TandemError(f"{what}: no local path of that name, and fetching it from the Hugging Face Hub "
                          f"failed ({reason[:200]})") from None


def dataset_path(text: str, what: str, file: bool = False) -> Path:
    """`text` as a local path if it exists, else as `org/name[/path/in/repo]` of a Hub dataset (a file or a
    folder of it; with `file`, only a path inside the repo can be one); other text is returned as a path, for
    the caller's own "not found"."""
    local = Path(text).expanduser()
    match = HUB_PATH.fullmatch(text)
    if (local.exists() or match is None or (file and match["inside"] is None)
            or Path(match["repo"].split("/")[0]).expanduser().exists()):
        return local  # an existing local folder "data/" makes "data/trian.parquet" a local typo, not a Hub name
    inside = match["inside"]
    patterns = None if inside is None else [inside, f"{inside}/*", f"{inside}/**"]
    snapshot = hub_snapshot(match["repo"], f"{what} '{text}'", "dataset", patterns, wanted=inside)
    found = snapshot / inside if inside else snapshot
    if not found.exists():
        raise TandemError(f"{what} '{text}': the Hub dataset {match['repo']} has no '{inside}'")
    return found
