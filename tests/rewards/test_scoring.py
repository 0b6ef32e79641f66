"""Choosing a reward function by name, scoring a batch in parallel, and the exception policy."""

import pluggy
import pytest
import torch

from core.errors import RunDied, TandemError
from core.plugins import hookspecs
from core.rewards import builtin
from core.rewards.base import RewardInput
from core.rewards.gsm8k import gsm8k_strict
from core.rewards.scoring import RewardScorer, resolve_reward_fn


@pytest.fixture
def pm():
    manager = pluggy.PluginManager(hookspecs.PROJECT)
    manager.add_hookspecs(hookspecs)
    manager.register(builtin, name="core-rewards")
    return manager


def test_resolve_by_plugin_name(pm):
    assert resolve_reward_fn("gsm8k", pm) is gsm8k_strict


def test_resolve_by_dotted_path(pm):
    assert resolve_reward_fn("core.rewards.gsm8k:gsm8k_strict", pm) is gsm8k_strict


@pytest.mark.parametrize(
    "name, message",
    [
        ("gsm9k", "unknown reward function 'gsm9k'; available: auto, format_boxed"),
        ("no_such_module:fn", "cannot import module 'no_such_module'"),
        ("core.rewards.gsm8k:nope", "has no function 'nope'"),
    ],
)
def test_resolve_errors_name_the_culprit(pm, name, message):
    with pytest.raises(TandemError, match=message.replace("(", r"\(")):
        resolve_reward_fn(name, pm)


def test_auto_picks_the_rule_by_data_source():
    gsm = RewardInput("#### 7", "7", data_source="openai/gsm8k")
    math = RewardInput("\\boxed{7}", "7", data_source="hendrycks/math")
    assert builtin.by_data_source(gsm) == 1.0 and builtin.by_data_source(math) == 1.0
    with pytest.raises(TandemError, match="no rule for data_source 'mystery'"):
        builtin.by_data_source(RewardInput("7", "7", data_source="mystery"))


def fails_on_odd(sample: RewardInput) -> float:
    """Module-level so the process pool can pickle it."""
    if int(sample.ground_truth) % 2:
        raise ZeroDivisionError("odd")
    return 1.0


def returns_text(sample: RewardInput):
    return "1.0"


def samples(n):
    return [RewardInput(response="", ground_truth=str(i)) for i in range(n)]


@pytest.mark.parametrize("executor, workers", [("thread", 4), ("process", 2), ("thread", 1)])
def test_failures_get_the_error_score_and_are_counted(executor, workers):
    scorer = RewardScorer(fails_on_odd, workers=workers, executor=executor, error_score=-1.0)
    try:
        batch = scorer.score(samples(6))
    finally:
        scorer.close()
    assert batch.scores.tolist() == [1.0, -1.0, 1.0, -1.0, 1.0, -1.0]  # order kept
    assert batch.errors == 3
    assert batch.metrics == {"reward/errors": 3.0, "reward/timeouts": 0.0}


def test_non_numbers_count_as_errors():
    scorer = RewardScorer(lambda s: returns_text(s) if s.response == "x" else 1.0, workers=1)
    batch = scorer.score([RewardInput("x"), RewardInput("x"), RewardInput("ok")])
    assert batch.errors == 2 and batch.scores.tolist() == [0.0, 0.0, 1.0]


@pytest.mark.parametrize("bad", [float("inf"), float("-inf"), float("nan")])
def test_non_finite_scores_are_errors(bad):
    batch = RewardScorer(lambda s: bad if s.response == "x" else 1.0, workers=1).score([RewardInput("x"), RewardInput("y")])
    assert batch.errors == 1 and batch.scores.tolist() == [0.0, 1.0]


def test_every_sample_failing_stops_the_run_with_the_first_error():
    with pytest.raises(RunDied, match=r"'fails_on_odd' failed on 2 of 2 samples .* first: sample 0: ZeroDivisionError"):
        RewardScorer(fails_on_odd, workers=1).score([samples(2)[1]] * 2)
    scorer = RewardScorer(fails_on_odd, workers=1, stop_if_failed_fraction=0.5)  # half is enough
    with pytest.raises(RunDied, match="failed on 2 of 4 samples"):
        scorer.score(samples(4))


def test_raise_on_error_names_function_and_sample():
    scorer = RewardScorer(fails_on_odd, workers=1, raise_on_error=True)
    with pytest.raises(TandemError, match="'fails_on_odd' failed on sample 1: ZeroDivisionError: odd"):
        scorer.score(samples(3))


def test_configuration_errors_are_never_averaged_away():
    scorer = RewardScorer(builtin.by_data_source, workers=2)
    with pytest.raises(TandemError, match="no rule for data_source"):
        scorer.score([RewardInput("7", "7", data_source="mystery")])
    scorer.close()


def test_bools_and_ints_are_scores():
    batch = RewardScorer(lambda s: s.response == "yes", workers=1).score(
        [RewardInput("yes"), RewardInput("no")]
    )
    assert batch.scores.dtype == torch.float32 and batch.scores.tolist() == [1.0, 0.0] and batch.errors == 0


def test_unknown_executor():
    with pytest.raises(TandemError, match="reward.executor"):
        RewardScorer(gsm8k_strict, executor="gpu")


def test_build_reward_scorer(pm, tmp_path):
    from core.rewards.build import build_reward_scorer

    scorer = build_reward_scorer(pm, reward_fn="gsm8k", workers=1, on_error_score=-1.0)
    assert scorer.score([RewardInput("#### 7", "7")]).scores.tolist() == [1.0]
    with pytest.raises(TandemError, match="cannot load reward model"):
        build_reward_scorer(pm, model_path=str(tmp_path / "no-model"))
