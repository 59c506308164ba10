"""A small day-ahead forecaster of hourly traffic volume (Metro Interstate I-94), written as a team would:
plain pandas + PyTorch, nothing of hpt but the few calls of its trial protocol in train.py."""
