"""The scaling stage: grid-search the compound coefficients at phi = 1, then emit a family of networks.

    grid     -- the (alpha, beta, gamma) grid, its nominal / actual FLOPs constraint
    family   -- members for phi = 1..7, the published coefficients, members fitted to FLOPs budgets
    stage    -- the grid as a resumable Optuna study, each point trained on the proxy task
    outputs  -- the files in runs/<study>/family/

This package imports `nas`; `nas` never imports it (except its CLI command module, nas/cli/scale.py).
"""
