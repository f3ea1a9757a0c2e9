"""What leaves the tool: the folders `nas export` writes and verifies (`export`), the preprocessing contract
config.json (`preprocessing`), the model card (`card`), the int8 ONNX form checked on the run's data
(`int8`), what export and `nas.load` accept (`sources`: names, spec files, study, train and export
folders), `load` (an exported folder -> a plain nn.Module and its config) and `predict` (image files ->
top classes).

May import every step below it (`nas.latency`, `nas.proxy`, `nas.model`, `nas.arch`, `nas._common`,
`nas.errors`); it reads the search's and the scaling stage's outputs only as files.
"""
