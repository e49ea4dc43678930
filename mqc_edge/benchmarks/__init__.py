"""Latency, memory and cost-model harness: where each millisecond goes, and how far from the floor."""
