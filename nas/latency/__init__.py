"""Latency of networks on this machine, with the paper's protocol (`measure`: batch 1, one thread, warm-up,
then repeated timed runs) on three forms of the network: eager, the inference form captured by torch.export
and onnxruntime; and predicted latency: the parts a network is made of (`parts`: stem, blocks, head, each
named by a key), a table of their measured latencies on one device (`table`, `nas latency-table`) and the
predictor that sums a network's entries (`predict`), fast enough for a search to call on every candidate.

A step of its own rather than part of `nas.deploy`: the search reads latency as a cost of a candidate, so it
must sit below the search. May import `nas.model`, `nas.arch`, `nas._common` and `nas.errors`.
"""
