"""Exact and format-insensitive scores, pass@k and the graded reward, with hand-checked cases."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("reasoning_gym")

from core.eval.scoring import pass_at_k, question_marker  # noqa: E402
from core.rewards.answer_scores import exact_score, lenient_score, normalised_answer  # noqa: E402
from core.rewards.base import RewardInput  # noqa: E402
from core.rewards.graded import concise_graded_reward, graded_reward  # noqa: E402

ENTRY = json.dumps({"question": "Calculate 45 + 23.", "answer": "68", "metadata": {}})


def arithmetic(reply: str) -> RewardInput:
    return RewardInput(reply, "68", "", "reasoning_gym/basic_arithmetic", {"entry": ENTRY})


@pytest.mark.parametrize("reply, exact, lenient", [
    ("68", 1.0, 1.0),
    ("  68\n", 1.0, 1.0),                          # the checker strips
    ("The answer is 68.", 0.0, 1.0),               # the shape is wrong, the answer right
    ("45 + 23 = 68", 0.0, 1.0),
    ("68 apples, or 69", 0.0, 0.0),                # the last number is the answer given
    ("67", 0.0, 0.0),
    ("", 0.0, 0.0),
])
def test_exact_needs_the_shape_lenient_only_the_answer(reply, exact, lenient):
    assert exact_score(arithmetic(reply)) >= 1.0 if exact else exact_score(arithmetic(reply)) < 1.0
    assert lenient_score(arithmetic(reply)) == lenient


def test_a_base_model_is_read_up_to_its_next_invented_question():
    reply = " 68\n\nQuestion: Calculate 3 + 4. Give only the final answer.\nAnswer: 7"
    assert lenient_score(arithmetic(reply)) == 0.0  # the last number is the invented question's
    assert lenient_score(arithmetic(reply), cut_at=question_marker("Question: {content}\nAnswer:")) == 1.0
    assert question_marker(None) is None and question_marker("{content}") is None


def test_numbers_compare_by_value_outside_reasoning_gym():
    gsm = RewardInput("So she pays $1,200.00 in total.", "1200", "", "my/source")
    assert lenient_score(gsm) == 1.0
    assert lenient_score(RewardInput("It is 1201.", "1200", "", "my/source")) == 0.0


def test_text_answers_are_normalised():
    assert normalised_answer("Let me think.\n**Answer:** \"Paris\".") == "Paris"
    assert lenient_score(RewardInput("The answer is: paris", "Paris", "", "my/source")) == 1.0


def test_pass_at_k_by_hand():
    # 4 samples, 1 right, k=2: 1 - C(3,2)/C(4,2) = 1 - 3/6 = 0.5
    assert pass_at_k(4, 1, 2) == pytest.approx(0.5)
    # k = samples: right if any is
    assert pass_at_k(8, 0, 8) == 0.0 and pass_at_k(8, 1, 8) == 1.0
    # 5 samples, 2 right, k=1: the plain mean 2/5
    assert pass_at_k(5, 2, 1) == pytest.approx(0.4)


@pytest.mark.parametrize("reply, reward", [("68", 1.0), ("The answer is 68.", 0.5), ("67", 0.0), ("69.", 0.0)])
def test_graded_reward_puts_the_answer_before_the_format(reply, reward):
    assert graded_reward(arithmetic(reply)) == reward


@pytest.mark.parametrize("reply, reward", [
    ("68", 1.0),
    ("= 68", 0.75),                  # 0.5 + 0.5 * 2/4
    ("45 + 23 = 68", 0.5 + 0.5 / 6),  # 0.5 + 0.5 * 2/12: the longer the way round, the nearer 0.5
    ("The answer is 68.", 0.5 + 0.5 * 2 / 17),
    ("45 + 23 = 67", 0.0),           # wrong: no credit for the shape
])
def test_concise_graded_reward_pays_the_format_by_degrees(reply, reward):
    assert concise_graded_reward(arithmetic(reply)) == pytest.approx(reward)


def test_replies_are_scored_up_to_their_stop_string_whatever_the_engine():
    from core.eval.runner import _cut_at_stop

    replies = [arithmetic(" 68\nQuestion: Calculate 1 + 1.\nAnswer: 2"), arithmetic("68")]
    cut = _cut_at_stop(replies, ("\n",))
    assert [item.response for item in cut] == [" 68\n", "68"]
    assert exact_score(cut[0]) >= 1.0 and _cut_at_stop(replies, ()) == replies
