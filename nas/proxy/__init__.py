"""The proxy task: data sources and their seeded train/validation split (`data`), batched augmentation
(`augment`), the reference recipe (`optim`: RMSProp with TF semantics, `schedule`, `ema`), the trainer
(`trainer.train` with its `presets`) and the checkpoint files a run leaves (`checkpoint`).

May import `nas.model`, `nas.arch`, `nas._common` and `nas.errors`; nothing about Optuna or the search.
"""
