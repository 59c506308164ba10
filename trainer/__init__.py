"""hpt.trainer — the program inside each trial: reads ONE manifest, trains, writes to the results store."""
