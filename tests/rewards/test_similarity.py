"""The similarity reward on hand-scored replies: ratio = 2 * matched / (len(reply) + len(reference))."""

import pytest

from core.errors import TandemError
from core.plugins.manager import get_plugin_manager
from core.rewards.base import RewardInput
from core.rewards.similarity import answer_similarity


@pytest.mark.parametrize(
    "reply, expected",
    [
        ("olleh", 1.0),  # exact: the only way to 1.0
        ("  olleh\n", 1.0),  # surrounding whitespace is not part of the answer
        ("olle", 8 / 9),  # one letter missing: 2 * 4 / (4 + 5)
        ("ollehx", 10 / 11),  # one letter extra: 2 * 5 / (6 + 5)
        ("olleh is the word", 10 / 22),  # padding costs: 2 * 5 / (17 + 5)
        ("hello", 0.4),  # the word forwards: in-order matches "lo" (or "ll"), 2 * 2 / 10
        ("<answer>olleh</answer>", 1.0),  # reasoning-gym's answer tag is honoured
        ("", 0.0),
    ],
)
def test_similarity_scores_by_matched_characters(reply, expected):
    assert answer_similarity(RewardInput(response=reply, ground_truth="olleh")) == pytest.approx(expected)


def test_similarity_names_a_missing_reference():
    with pytest.raises(TandemError, match="ground_truth"):
        answer_similarity(RewardInput(response="olleh"))


def test_similarity_is_offered_by_name():
    offered = {name for table in get_plugin_manager().hook.tandem_reward_functions() for name in table}
    assert "similarity" in offered
