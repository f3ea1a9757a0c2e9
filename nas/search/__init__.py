"""The baseline search: search-space files (`space`), the run's settings (`config`), the MnasNet reward
(`reward`) and Pareto fronts (`pareto`), the samplers and the objective, the run itself with its worker
processes (`run`) and the outputs regenerated from the study (`report`).

May import `nas.studies`, `nas.proxy`, `nas.model`, `nas.arch`, `nas._common` and `nas.errors`.
"""
