"""Reduced precision with proof (issue 20): `mqc-edge build` writes FP16 / BF16 / INT8 / mixed copies of
an export directory (`build.py`), each gated end to end against the FP32 torch reference (`gate.py`)."""
