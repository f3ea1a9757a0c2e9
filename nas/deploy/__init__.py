"""What leaves the tool: the folders `nas export` writes and verifies (`export`), the model card (`card`),
what export and `nas.load` accept (`sources`: names, spec files, study, train and export folders) and
`load` (an exported folder -> a plain nn.Module).

May import every step below it (`nas.latency`, `nas.proxy`, `nas.model`, `nas.arch`, `nas._common`,
`nas.errors`); it reads the search's and the scaling stage's outputs only as files.
"""
