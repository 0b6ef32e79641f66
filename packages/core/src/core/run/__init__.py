"""What a training run is besides its algorithm, for RL and SFT alike: the session (run directory, tracker,
resume, checkpoints, report), the stop at a signal, and the health guards that stop a run whose numbers died."""
