"""What a network is, without torch: the `Spec` (the spine of the pipeline), the TF and timm block notations,
the per-block geometry, the cost model (parameters, FLOPs, activation memory), the compound-scaling rules, the
published EfficientNet table, search spaces (`space`: a TOML file of per-stage choices, sampled into specs),
`resolve_spec` (a name, file, folder or block strings -> Spec) and the per-stage description rows of `nas show`.

May import only `nas.errors` and `nas._common`; never torch, Optuna or fvcore, so specs can be made, counted
and stored anywhere.
"""
