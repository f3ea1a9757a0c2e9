"""The weight-sharing supernet, an accuracy estimator that scores a candidate in well under a second:
`network` (the elastic network of a search space and the extraction of one architecture's weights into the
ordinary `build_model(spec)` network), `training` (the sandwich rule with in-place distillation, resumable
checkpoints) and `scoring` (extract, recalibrate BatchNorm on training images, measure validation accuracy).

May import `nas.proxy` (data, augmentation, the recipe), `nas.model`, `nas.arch`, `nas._common` and
`nas.errors`; the search imports it, never the other way round.
"""
