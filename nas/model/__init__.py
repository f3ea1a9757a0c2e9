"""Spec -> torch: the builder (`builder.build_model`, blocks, initialisation), the inference form (`inference`:
BN folded into the convs, channels-last, frozen graphs), the ONNX graph of that form (`onnx`), and where and in
what precision a network runs (`device`: the device a user names, mixed precision, one device per worker).

May import `nas.arch`, `nas._common` and `nas.errors`. Everything downstream (training, scoring, export,
latency) receives the ordinary modules built here.
"""
