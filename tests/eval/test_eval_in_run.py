"""A run evaluates its base model before the first step and the trained one after the last, on the same
held-out and shifted sets; `python -m core.eval` gives the same table for finished runs."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("reasoning_gym")

from core.eval import cli  # noqa: E402
from core.report import write_report  # noqa: E402
from core.rl.loop import train  # noqa: E402

QUICK = ["+backend=cpu", "data=reasoning_gym", "trainer.total_steps=2", "data.prompt_batch_size=2", "rollout.n=2",
         "rollout.max_tokens=8", "data.val_size=4", "data.reasoning_gym.train_size=50", "eval.size=6",
         "trainer.test_freq=0", "+eval.shifted={basic_arithmetic: {min_terms: 3, max_terms: 3}}"]


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory):
    from hydra import compose, initialize_config_module

    from core.config.schema import register_schemas

    register_schemas()
    run_dir = tmp_path_factory.mktemp("run")
    with initialize_config_module(config_module="core.conf", version_base=None):
        cfg = compose("config", overrides=[*QUICK, f"trainer.output_dir={run_dir}"])
    return run_dir, train(cfg)


def test_a_run_evaluates_base_and_trained_on_both_sets(finished_run):
    run_dir, summary = finished_run
    results = json.loads((run_dir / "eval.json").read_text())
    assert results["base"]["model"] == "builtin:tiny-qwen2" and results["base"]["step"] == 0
    assert results["final"]["step"] == 2
    for label in ("base", "final"):
        metrics = results[label]["metrics"]
        for name in ("heldout", "shifted"):
            assert 0 <= metrics[f"eval/{name}/exact"] <= metrics[f"eval/{name}/lenient"] <= 1
            assert metrics[f"eval/{name}/questions"] > 0
        assert len(results[label]["examples"]["heldout"]) == 3
    assert results["entropy"]["collapsed"] is False and results["entropy"]["end_over_start"] > 0.2
    table = (run_dir / "eval.md").read_text()
    assert "| builtin:tiny-qwen2 | heldout |" in table and "| trained | shifted |" in table and "no collapse" in table
    assert summary["eval"] in table
    assert "held-out evaluation" in write_report(run_dir)  # the report shows the table
    logged = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    assert any("eval/heldout/lenient" in row for row in logged if row["step"] == 0)


def test_the_cli_gives_base_each_run_and_their_mean(finished_run, capsys, tmp_path):
    run_dir, _ = finished_run
    out = tmp_path / "eval.json"
    cli.main([str(run_dir), str(run_dir), "eval.size=6", "eval.pass_k=2", "--json", str(out)])
    printed = capsys.readouterr().out
    assert "| base: builtin:tiny-qwen2 | heldout |" in printed and "mean ± sd of 2" in printed
    assert "pass@2_lenient" in printed
    rows = json.loads(out.read_text())
    base = json.loads((run_dir / "eval.json").read_text())["base"]["metrics"]
    # the same greedy replies from a fresh engine on the saved base model: the run's own start-of-run figures
    assert rows["base: builtin:tiny-qwen2"]["eval/heldout/lenient"] == base["eval/heldout/lenient"]


def test_the_cli_names_a_run_without_a_final_model(finished_run, tmp_path):
    (tmp_path / "config.json").write_text((finished_run[0] / "config.json").read_text())
    with pytest.raises(SystemExit) as stopped:
        cli.main([str(tmp_path)])
    assert stopped.value.code == 2


@pytest.mark.parametrize("override, named", [
    ("trainer.totl_steps=3", "totl_steps"),            # Hydra's composition error
    ("+trainer.totl_steps=3", "trainer.totl_steps"),    # composes, then refused as unknown
    ("+experiment=no_such_preset", "experiment/no_such_preset"),
])
def test_the_cli_names_a_bad_override_in_one_line(override, named, capsys):
    with pytest.raises(SystemExit) as stopped:
        cli.main(["+backend=cpu", override])
    error = capsys.readouterr().err
    assert stopped.value.code == 2 and named in error
    assert "Traceback" not in error and len(error.strip().splitlines()) == 1
