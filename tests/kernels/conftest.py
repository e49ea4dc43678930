"""Kernel tests run single-threaded: the CI box is small and shared; they test values, not speed."""

import torch

torch.set_num_threads(1)
