"""The proxy task and the training of networks: data sources and their seeded train/validation split (`data`,
`split`; image folders in `folder`, decoded into memory or streamed from disk by `stream`), the trainer's
batches from either (`batches`), batched augmentation (`augment`), the reference recipe (`optim`: RMSProp with
TF semantics, `schedule`, `ema`), the trainer (`trainer.train` with its `presets`), distributed training
through torchrun and DistributedDataParallel (`distributed`), starting from trained weights (`transfer`) and
the files a run leaves (`checkpoint`).

May import `nas.model`, `nas.arch`, `nas._common` and `nas.errors`; nothing about Optuna or the search.
"""
