"""Datasets, frame sources, the synthetic satellite-video generator and J&F metrics (torch-free)."""
