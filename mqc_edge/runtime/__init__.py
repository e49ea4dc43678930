"""The torch-free runtime: Tracker (orchestration), memory slots, pre/postprocessing, backends.

Nothing here imports torch; the torch backend is loaded by name (`load_backend("torch")`).
"""
