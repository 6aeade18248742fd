"""Serving a compressed model outside the pipeline.

`deployable.load_deployable` finds a model's IDs, titles and seen items wherever it was
saved (a student, a member, the ensemble); `onnx_export` writes and checks ONNX graphs of it
(top-K and rating, fp32 and int8); `service` answers HTTP requests from either the PyTorch
model or the ONNX graphs. The packages these need (onnx, onnxruntime, fastapi, uvicorn)
are the ``deploy`` extra; nothing else in pakd imports them.
"""
