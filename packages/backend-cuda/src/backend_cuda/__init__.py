"""Tandem's NVIDIA CUDA backend (registered through the `tandem.plugins` entry point)."""
