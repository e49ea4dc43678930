"""PyTorch MQC-SAM on Meta's sam2 package: the MQC modules, checkpoints and the torch stage backend."""
