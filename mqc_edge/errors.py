"""Typed errors that carry the file, frame or tensor they are about.

The CLI turns any `MqcEdgeError` into one line on stderr and a non-zero exit, so every
message must stand alone: what is wrong, where, expected vs got.
"""

from __future__ import annotations


class MqcEdgeError(Exception):
    """Base of every error a user can cause with bad input; never a bug in mqc-edge."""


class DatasetError(MqcEdgeError):
    """A dataset on disk does not follow the RS-RVOS layout (names the file)."""


class BadFrameError(MqcEdgeError):
    """A frame cannot be read or does not fit the video (names the frame)."""


class ConfigError(MqcEdgeError):
    """An argument or configuration value is out of its allowed range."""


class CheckpointError(MqcEdgeError):
    """A checkpoint is missing tensors, has wrong shapes or an unknown format."""


class ManifestMismatchError(MqcEdgeError):
    """An exported model directory does not match its manifest (hash, version, signature)."""


class PromptError(MqcEdgeError):
    """A text, box, point or mask prompt does not fit the model (names the prompt, expected vs got)."""


class StageContractError(MqcEdgeError):
    """A stage got or returned a tensor that does not fit the stage contract (names stage and tensor)."""


class CudaError(MqcEdgeError):
    """A CUDA runtime call or a TensorRT enqueue failed (names the call and CUDA's error)."""
