"""The baseline search: the run's settings (`config`), the cost it holds to a target beside accuracy, FLOPs or
predicted latency (`cost`), the MnasNet reward (`reward`) and Pareto fronts
(`pareto`), the samplers and the objective, the run itself with its worker processes (`run`) and the outputs
regenerated from the study (`report`). The search-space files it samples are read by `nas.arch.space`.

May import `nas.studies`, `nas.supernet`, `nas.proxy`, `nas.latency`, `nas.model`, `nas.arch`, `nas._common`
and `nas.errors`.
"""
