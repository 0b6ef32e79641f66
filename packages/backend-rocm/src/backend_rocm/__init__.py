"""Tandem's AMD ROCm backend (registered through the `tandem.backends` entry point)."""
