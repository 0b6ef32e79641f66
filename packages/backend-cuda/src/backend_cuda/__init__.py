"""Tandem's NVIDIA CUDA backend (registered through the `tandem.backends` entry point)."""
