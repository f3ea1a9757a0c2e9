"""Small helpers every step uses: atomic file writes, reading JSON files, text and markdown tables, the
run-folder file names, the parsers of numbers users type (FLOPs, lists of budgets, latencies, timeouts), the
logging set-up of the command (`logs`) and reading an image file the way training does (`images`).

Private to the package. Imports nothing from `nas` but `nas.errors`, so any step may import it.
"""
