"""The RL loop and what only it does: collect experience (rollout + rewards), evaluate on held-out prompts.

`trainer/` holds what it trains with (actor, critic, batch); `workers/` where that runs.
"""
