"""Tandem core: configs, plugin hooks, rollout engines, algorithms and the RL training loop."""
