"""Per-stage ONNX export with proven parity (issue 12): `export_model` writes DIR/<stage>.onnx
for every stage of the contract, the source weights, and DIR/manifest.json with the parity report."""

from mqc_edge.export.model_export import export_model

__all__ = ["export_model"]
