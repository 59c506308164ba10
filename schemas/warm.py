"""The warm slot folder protocol: how `hpt apply` (the docker backend) and a warm worker running in a slot
container (`python -m hpt.trainer.warm --folder DIR`) talk, through files in one bind-mounted folder.
Both sides read the names from here; trainer/warm.py's docstring describes each file."""
from __future__ import annotations

REQUEST = ".request.json"    # <trial>.request.json: the apply asks for a trial (written whole)
PID = ".pid"                 # <trial>.pid: the worker forked it; the child's gate waits for this file
LOG = ".log"                 # <trial>.log: the child's stdout and stderr
EXIT = ".exit"               # <trial>.exit: how it ended
CANCEL = ".cancel"           # <trial>.cancel: the apply wants it stopped
HEARTBEAT = "heartbeat"      # touched by the watching apply
IDLE_ENV = "HPT_WARM_IDLE_S"
IDLE_EXIT_S = 60.0           # an idle worker whose heartbeat is older than this exits (its container ends)
CANCEL_GRACE_S = 3.0         # SIGTERM, then SIGKILL after this many seconds
REQUESTER_ENV = "HPT_WARM_REQUESTER"   # the pid of the apply that started a local warm worker: a request read
                                      # after that apply died is dropped
