"""moto_server whose EMR on EKS job runs move through their states over time.

moto 5 creates emr-containers job runs in RUNNING and never changes them. This launcher makes a
job run's `state` a function of its age before starting moto's own server `main`:

    PENDING -> SUBMITTED -> RUNNING -> COMPLETED   (one step of EMRC_STEP_SECONDS each)

Runs whose name starts with EMRC_FAIL_PREFIX ("fail") end FAILED with failureReason USER_ERROR;
runs whose name starts with EMRC_LONG_PREFIX ("long") stay RUNNING until cancelled. CancelJobRun
still sets the state (moto writes CANCELLED), which pins it.

Usage: python moto_emrc_progress.py -H 127.0.0.1 -p <port>   (same arguments as moto_server)
"""

import os
import sys
import time

from moto.emrcontainers import models

STATES = os.environ.get("EMRC_STATES", "PENDING,SUBMITTED,RUNNING,COMPLETED").split(",")
STEP_SECONDS = float(os.environ.get("EMRC_STEP_SECONDS", "0.5"))
FAIL_PREFIX = os.environ.get("EMRC_FAIL_PREFIX", "fail")
LONG_PREFIX = os.environ.get("EMRC_LONG_PREFIX", "long")

_moto_init = models.JobRun.__init__


def _init(self, *args, **kwargs):
    _moto_init(self, *args, **kwargs)
    self._born = time.monotonic()


def _state(self):
    pinned = self.__dict__.get("_pinned_state")
    if pinned is not None:
        return pinned
    born = self.__dict__.get("_born")
    if born is None:  # moto's constructor assigns the state before _init records the birth time
        return STATES[0]
    sequence = list(STATES)
    name = self.name or ""
    if LONG_PREFIX and name.startswith(LONG_PREFIX):
        sequence = sequence[: sequence.index("RUNNING") + 1]
    elif FAIL_PREFIX and name.startswith(FAIL_PREFIX):
        sequence[-1] = "FAILED"
    state = sequence[min(int((time.monotonic() - born) / STEP_SECONDS), len(sequence) - 1)]
    if state in ("COMPLETED", "FAILED") and self.finished_at is None:
        self.finished_at = models.utcnow()
        if state == "FAILED":
            self.failure_reason = "USER_ERROR"
            self.state_details = "Job failed (simulated by moto_emrc_progress)."
    return state


def _set_state(self, value):
    # moto's constructor sets the initial state; only later writes (cancel) pin it.
    if "_born" in self.__dict__:
        self.__dict__["_pinned_state"] = value


models.JobRun.__init__ = _init
models.JobRun.state = property(_state, _set_state)

if __name__ == "__main__":
    from moto.server import main

    main(sys.argv[1:])
