"""A key the schema does not declare is refused in every form, before anything runs: Hydra refuses
`trainer.totl_steps=20` itself, and `+trainer.totl_steps=20` (the form its error suggests) or `+anything=1`
are refused here, with the closest declared key."""

from __future__ import annotations

import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from core.config.known_keys import refuse_unknown_keys, unknown_keys
from core.config.schema import TandemConfig
from core.errors import TandemError


def test_every_shipped_config_has_only_declared_keys(compose_config):
    for overrides in [(), ("+experiment=smollm2_arithmetic",), ("+experiment=gemma3_arithmetic",),
                      ("algorithm=ppo", "+backend=cpu")]:
        assert unknown_keys(compose_config(*overrides), TandemConfig) == [], overrides


def test_added_keys_are_named_with_the_closest_declared_one(compose_config):
    cfg = compose_config("+backend=cpu")
    for key, value in [("trainer.totl_steps", 20), ("anything", 1),  # as Hydra's '+' adds them
                       ("backend.settings.anything_goes", 1),  # a free-form dict: core.config.backend_settings checks it
                       ("eval.shifted", {"basic_arithmetic": {"min_terms": 3}})]:
        OmegaConf.update(cfg, key, value, force_add=True)
    assert unknown_keys(cfg, TandemConfig) == ["trainer.totl_steps", "anything"]
    with pytest.raises(TandemError, match=r"trainer.totl_steps \(did you mean trainer.total_steps\?\); anything"):
        refuse_unknown_keys(cfg, TandemConfig)


@pytest.mark.parametrize("module, override", [("core.main", "+trainer.totl_steps=20"), ("core.main", "+anything=1"),
                                               ("sft.main", "+trainer.totl_steps=3")])
def test_the_entry_points_refuse_them_before_anything_runs(module, override, tmp_path):
    done = subprocess.run([sys.executable, "-m", module, "+backend=cpu", override, f"trainer.output_dir={tmp_path}/run"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "unknown config key" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()  # nothing written
