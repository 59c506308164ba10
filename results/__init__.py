"""hpt.results — the results store (the source of truth) and the analysis of what it holds."""
