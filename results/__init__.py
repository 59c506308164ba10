"""hpt.results — the analysis of what the store (hpt.store) holds: tables, significance, trends, fidelity, report."""
