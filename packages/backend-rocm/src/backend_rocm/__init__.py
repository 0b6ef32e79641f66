"""Tandem's AMD ROCm backend (registered through the `tandem.plugins` entry point)."""
