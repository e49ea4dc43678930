"""mqc-edge: MQC-SAM / SAM 2 video segmentation runtime for edge and ground GPUs."""

__version__ = "0.2.0"
