"""Low-precision retrieval: quantized head outputs (binary, int8 document codes) and quantized head weights
(int8, MXFP4, NVFP4), trained natively by ES on the metric of the system as it is served. See README.md."""
