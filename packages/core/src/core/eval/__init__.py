"""Held-out evaluation: did the model get better at the skill, on questions it never saw?

`sets` builds the held-out and shifted sets (disjoint from training by construction), `scoring` scores a
reply exactly and format-insensitively, `runner` generates and scores, `table` prints base vs trained,
and `python -m core.eval` does all of it for models and finished runs.
"""
