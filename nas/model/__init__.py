"""Spec -> torch: the builder (`builder.build_model`, blocks, initialisation), the inference form (`inference`:
BN folded into the convs, channels-last, captured by torch.export), the ONNX graph of that form (`onnx`),
its int8 quantization by onnxruntime (`quantize`), and where and in what precision a network runs (`device`:
the device a user names, mixed precision, one device per worker).

May import `nas.arch`, `nas._common` and `nas.errors`. Everything downstream (training, scoring, export,
latency) receives the ordinary modules built here.
"""
