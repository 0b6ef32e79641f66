"""Rule rewards on hand-written responses: correct, wrong, malformed, missing answer."""

import pytest

from core.rewards.base import RewardInput
from core.rewards.format_reward import boxed_format, hash_answer_format, think_format
from core.rewards.gsm8k import extract_answer, gsm8k_flexible, gsm8k_strict
from core.rewards.math_answer import is_equivalent, last_boxed, math_boxed


def sample(response, truth=None):
    return RewardInput(response=response, ground_truth=truth)


@pytest.mark.parametrize(
    "response, truth, strict, flexible",
    [
        ("3 + 4 = 7 apples.\n#### 7", "7", 1.0, 1.0),  # correct
        ("3 + 4 = 8 apples.\n#### 8", "7", 0.0, 0.0),  # wrong
        ("The total is 1,200 + 2,400.\n#### 3,600", "3600", 1.0, 1.0),  # thousands separators
        ("#### $12.50", "12.5", 1.0, 1.0),  # dollar sign, trailing zero
        ("so the answer is 7.", "7", 0.0, 1.0),  # no #### : only flexible finds it
        ("I am not sure.", "7", 0.0, 0.0),  # no number at all
        ("####", "7", 0.0, 0.0),  # malformed: marker without a number
        ("#### 7 wait, no: #### 9", "7", 0.0, 0.0),  # the last stated answer counts
        ("#### -3", "-3", 1.0, 1.0),  # negative
    ],
)
def test_gsm8k(response, truth, strict, flexible):
    assert gsm8k_strict(sample(response, truth)) == strict
    assert gsm8k_flexible(sample(response, truth)) == flexible


def test_gsm8k_looks_only_at_the_tail():
    # an early "#### 7" followed by 300+ characters of rambling is not a final answer
    assert extract_answer("#### 7" + " x" * 200) is None


def test_gsm8k_unknown_method():
    with pytest.raises(ValueError, match="strict"):
        extract_answer("#### 1", "loose")


@pytest.mark.parametrize(
    "text, boxed",
    [
        ("so $x = \\boxed{4}$.", "4"),
        ("\\boxed{\\frac{3}{4}}", "\\frac{3}{4}"),  # nested braces
        ("first \\boxed{1} then \\boxed{2}", "2"),  # last box wins
        ("\\fbox{5}", "5"),
        ("\\boxed 5$", "5"),
        ("\\boxed{\\frac{3}{4}", None),  # cut off inside the box
        ("no box here", None),
    ],
)
def test_last_boxed(text, boxed):
    assert last_boxed(text) == boxed


@pytest.mark.parametrize(
    "a, b",
    [
        ("\\dfrac{3}{4}", "\\frac{3}{4}"),
        ("\\frac34", "\\frac{3}{4}"),
        ("3/4", "\\frac{3}{4}"),
        ("0.5", "\\frac{1}{2}"),
        (".5", "\\frac{1}{2}"),
        ("x = 4", "4"),
        ("90^\\circ", "90"),
        ("5 \\text{ cm}", "5"),
        ("50\\%", "50"),
        ("\\left( 2, 5 \\right)", "(2,5)"),
        ("\\sqrt3", "\\sqrt{3}"),
        ("\\$10", "10"),
        ("0.75", "\\frac34"),  # values, not strings: math-verify evaluates
        ("\\frac{6}{8}", "3/4"),
    ],
)
def test_math_answers_equal_by_value(a, b):
    assert is_equivalent(a, b)


def test_math_answers_that_differ_stay_apart():
    assert not is_equivalent("\\frac{3}{4}", "\\frac{4}{3}")
    assert not is_equivalent("0.7", "\\frac34")
    assert not is_equivalent("", "4") and not is_equivalent("}{", "4")  # nothing parseable equals nothing


@pytest.mark.parametrize(
    "response, truth, score",
    [
        ("Thus $x = \\boxed{4}$.", "4", 1.0),
        ("The sum is $\\boxed{\\dfrac{3}{4}}$.", "\\frac{3}{4}", 1.0),
        ("The sum is $\\boxed{0.75}$.", "\\frac{3}{4}", 1.0),  # the same value
        ("Thus $x = \\boxed{5}$.", "4", 0.0),
        ("Thus x = 4.", "4", 0.0),  # missing box
        ("Thus $x = \\boxed{4", "4", 0.0),  # truncated
        ("\\boxed{(2, 5)}", "Vertex at $\\boxed{(2,5)}$", 1.0),  # ground truth given as a solution
    ],
)
def test_math_boxed(response, truth, score):
    assert math_boxed(sample(response, truth)) == score


def test_format_rewards():
    assert hash_answer_format(sample("steps\n#### 12")) == 1.0
    assert hash_answer_format(sample("12")) == 0.0
    assert boxed_format(sample("$\\boxed{12}$")) == 1.0
    assert boxed_format(sample("\\boxed{12")) == 0.0
    assert think_format(sample("<think>add them</think> 12")) == 1.0
    assert think_format(sample("<think>add them</think>")) == 0.0
    assert think_format(sample("12 <think>late</think> 12")) == 0.0


def test_format_bonus_adds_a_weighted_format_score():
    import pluggy

    from core.plugins import hookspecs
    from core.rewards import builtin
    from core.rewards.build import build_reward_scorer

    pm = pluggy.PluginManager(hookspecs.PROJECT)
    pm.add_hookspecs(hookspecs)
    pm.register(builtin)
    scorer = build_reward_scorer(pm, reward_fn="gsm8k_flexible", format_fn="format_number", format_weight=0.25)
    try:
        batch = scorer.score([RewardInput(" 72 ", "72"), RewardInput("it is 72", "72"), RewardInput("5", "72")])
    finally:
        scorer.close()
    # correct and bare: 1 + 0.25; correct in words: 1 + 0; wrong but bare: 0 + 0.25
    assert batch.scores.tolist() == [1.25, 1.0, 0.25]
