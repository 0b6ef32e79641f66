"""SFT test helpers: composing `sft.main`'s config, and a recording fake rollout engine."""

from __future__ import annotations

import torch

from core.backends.cpu import CpuBackend
from core.plugins.hookspecs import hookimpl
from core.rollout.base import RolloutOutput, SamplingParams, pad_responses
from core.sharding.base import iter_full_parameters


def compose_sft(*overrides: str):
    """The DictConfig `python -m sft.main +backend=cpu OVERRIDES` runs with."""
    from hydra import compose, initialize_config_module

    from sft.config import register_sft_schemas

    register_sft_schemas()
    with initialize_config_module(config_module="sft.conf", version_base=None):
        return compose("sft", overrides=["+backend=cpu", *overrides])


def tiny_run(tmp_path, *overrides: str):
    """A few-second SFT config on the builtin model: 8 validation prompts, greedy, no console table."""
    return compose_sft(
        f"trainer.output_dir={tmp_path}", "trainer.total_steps=4", "trainer.loggers=[jsonl]",
        "data.num_train=64", "data.num_val=8", "validation.val_freq=2", "validation.temperature=0",
        "trainer.save_model=false", *overrides,
    )


class RecordingEngine:
    """A RolloutEngine that records every call; its answer to a prompt is the prompt's last 3 ids reversed."""

    def __init__(self):
        self.generate_calls: list[tuple[list[list[int]], SamplingParams]] = []
        self.pushed: list[dict[str, torch.Tensor]] = []  # one full weight set per update_weights call
        self.events: list[str] = []

    def generate(self, prompts, params):
        self.generate_calls.append(([list(p) for p in prompts], params))
        self.events.append("generate")
        responses = [list(reversed(p[-3:])) for p in prompts]
        ids, logprobs, mask = pad_responses(responses, [[0.0] * len(r) for r in responses], 0)
        return RolloutOutput([list(p) for p in prompts], ids, logprobs, mask, torch.arange(len(prompts)),
                             torch.ones(len(prompts), dtype=torch.bool))

    def update_weights(self, named_tensors):
        self.pushed.append({name: tensor.detach().clone() for name, tensor in named_tensors})
        self.events.append("update_weights")

    def sleep(self):
        self.events.append("sleep")

    def wake_up(self, tags=None):
        self.events.append("wake_up")

    def close(self):
        self.events.append("close")


class RecordingSharding:
    def __init__(self, engine, model):
        self.engine, self.model = engine, model

    def __enter__(self):
        self.engine.wake_up()
        self.engine.update_weights(iter_full_parameters(self.model))
        return self

    def __exit__(self, *exc):
        self.engine.sleep()


class FakeBackendPlugin:
    """Answers for the cpu backend before core does, with one whose engines are recorded here."""

    def __init__(self):
        self.engines: list[RecordingEngine] = []
        plugin = self

        class RecordingCpuBackend(CpuBackend):
            def make_rollout_engine(self, cfg, model_dir):
                plugin.engines.append(RecordingEngine())
                return plugin.engines[-1]

            def make_sharding_manager(self, cfg, engine, trainer_model):
                return RecordingSharding(engine, trainer_model)

        self.backend = RecordingCpuBackend()

    @hookimpl(tryfirst=True)
    def tandem_backend(self, name):
        return self.backend if name == "cpu" else None


def exploding_reward(sample) -> float:
    """A reward function with a configuration mistake: the run must stop (and clean up)."""
    from core.errors import TandemError

    raise TandemError("reward exploded")
