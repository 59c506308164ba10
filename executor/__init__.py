"""hpt.executor — runs a plan: the scheduling loop and the backends (local, docker, k8s).

It moves manifests and never interprets hyperparameters; it imports neither the compiler nor
the trainer. A trial is done when its row is in the results store.
"""
