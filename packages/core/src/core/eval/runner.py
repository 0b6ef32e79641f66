"""Generate on each evaluation set and score every reply twice (exact, format-insensitive)."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field, replace

from core.eval.scoring import pass_at_k
from core.rewards.answer_scores import exact_score, lenient_score
from core.eval.sets import EvalSet
from core.rewards.scoring import reward_inputs
from core.rollout.base import Sampler, SamplingParams

log = logging.getLogger(__name__)
EXAMPLES_PER_SET = 3


@dataclass
class EvalResult:
    metrics: dict[str, float]  # eval/<set>/{exact,lenient,questions,response_length}[, pass@k_exact, pass@k_lenient]
    examples: dict[str, list[dict]] = field(default_factory=dict)  # set -> a few (question, reply, answer) as read


def evaluate(engine: Sampler, sets: list[EvalSet], tokenizer, max_tokens: int, pass_k: int = 0,
             temperature: float = 1.0, cut_at: str | None = None, stop: tuple[str, ...] = ()) -> EvalResult:
    """Greedy replies to every question of `sets` (one batched call per set), and with `pass_k` > 1, pass@k
    from that many samples per question. Call it where the engine holds the weights to evaluate."""
    result = EvalResult({})
    for eval_set in sets:
        samples = eval_set.dataset.samples
        prompts = [sample.prompt_ids for sample in samples]
        greedy = engine.generate(prompts, SamplingParams(n=1, temperature=0.0, max_tokens=max_tokens, logprobs=False,
                                                          stop=stop))
        inputs = _cut_at_stop(reward_inputs(samples, greedy, tokenizer), stop)
        exact = [_checked(exact_score, item) >= 1.0 for item in inputs]
        lenient = [_checked(lenient_score, item, cut_at) >= 1.0 for item in inputs]
        prefix = f"eval/{eval_set.name}"
        result.metrics.update({
            f"{prefix}/exact": sum(exact) / len(exact),
            f"{prefix}/lenient": sum(lenient) / len(lenient),
            f"{prefix}/questions": float(len(samples)),
            f"{prefix}/response_length": greedy.response_lengths.float().mean().item(),
        })
        result.examples[eval_set.name] = [
            {"question": item.prompt, "reply": item.response, "answer": str(item.ground_truth),
             "exact": bool(e), "lenient": bool(f)}
            for item, e, f in list(zip(inputs, exact, lenient))[:EXAMPLES_PER_SET]
        ]
        if pass_k > 1:
            sampled = engine.generate(
                prompts, SamplingParams(n=pass_k, temperature=temperature, max_tokens=max_tokens, logprobs=False,
                                        stop=stop))
            for kind, check, extra in (("exact", exact_score, ()), ("lenient", lenient_score, (cut_at,))):
                right = [0] * len(samples)
                replies = _cut_at_stop(reward_inputs(samples, sampled, tokenizer), stop)
                for group, item in zip(sampled.group_ids.tolist(), replies):
                    right[group] += _checked(check, item, *extra) >= 1.0
                result.metrics[f"{prefix}/pass@{pass_k}_{kind}"] = (
                    sum(pass_at_k(pass_k, c, pass_k) for c in right) / len(samples))
    return result


def _cut_at_stop(inputs: list, stop: tuple[str, ...]) -> list:
    """Each reply up to and including its first stop string, as vLLM returns it: an engine that ignores stop
    strings (the HF engine) is scored on the same text."""
    if not stop:
        return inputs
    cut = []
    for item in inputs:
        ends = [item.response.index(s) + len(s) for s in stop if s in item.response]
        cut.append(replace(item, response=item.response[:min(ends)]) if ends else item)
    return cut


def _checked(check, item, *args) -> float:
    """A checker that raises on an odd reply scores it 0 (a reply is model output: anything can come)."""
    try:
        return float(check(item, *args))
    except Exception as exc:  # noqa: BLE001 - one odd reply must not end an evaluation
        log.debug("eval: %s raised %s on %r", getattr(check, "__name__", check), exc, item.response[:80])
        return 0.0
