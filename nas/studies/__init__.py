"""Optuna plumbing shared by the search and the scaling grid: where a study lives (`storage`: the run folder's
journal file or any Optuna URL) and the worker loop (`runner`: an exact trial budget over many workers,
heartbeats, retry of a dead worker's trial).

May import `nas._common` and `nas.errors` only: it knows studies and trials, not networks.
"""
