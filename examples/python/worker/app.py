"""A lifecycle-aware worker for wasmlet, in Python (componentize-py, world `wasmlet:guests/worker`).

- `run` (`wasi:cli/run`) works in a loop: each round it polls the termination pollable
  (`control.subscribe-termination`) beside a 500 ms timer, and on terminate prints the reason and
  the grace left, then returns: exit code 0, reason `Completed`.
- `post_start` warms up (`POST_START_MS`) and leaves `/tmp/postStart_done` behind;
- `pre_stop` says how much grace is left when the stop begins.

Each of the three runs in an instance of its own: they share the container's files (its `/tmp`),
env and args, not memory.

Knobs (env): `POST_START_MS` — how long postStart takes; `WORK_MS` — exit on its own after this
long.
"""

import os

from wit_world import exports
from wit_world.exports import hooks
from wit_world.imports import control, monotonic_clock, poll, types

MS = 1_000_000  # WIT durations are nanoseconds

REASONS = {
    types.TerminationReason.POD_DELETED: "pod-deleted",
    types.TerminationReason.POST_START_HOOK_FAILED: "post-start-hook-failed",
    types.TerminationReason.HOST_SHUTDOWN: "host-shutdown",
    types.TerminationReason.POD_COMPLETED: "pod-completed",
    types.TerminationReason.PROBE_FAILED: "probe-failed",
}


def millis_from_env(name):
    value = os.environ.get(name)
    return int(value) if value and value.isdigit() else None


def wait_for_termination(timeout_ns):
    """Blocks until terminate arrives or `timeout_ns` passes; the termination, or None."""
    terminate = control.subscribe_termination()
    timer = monotonic_clock.subscribe_duration(timeout_ns)
    try:
        ready = poll.poll([terminate, timer])
    finally:
        # Pollables are resources: drop them now rather than when Python collects them.
        timer.__exit__(None, None, None)
        terminate.__exit__(None, None, None)
    return control.termination_requested() if 0 in ready else None


class Run(exports.Run):
    def run(self) -> None:
        print("run: started, working until terminated", flush=True)
        started = monotonic_clock.now()
        work_ms = millis_from_env("WORK_MS")
        while True:
            wait = 500 * MS
            if work_ms is not None:
                left = started + work_ms * MS - monotonic_clock.now()
                if left <= 0:
                    print("run: work finished, exiting on my own", flush=True)
                    return
                wait = min(wait, left)
            stop = wait_for_termination(wait)
            if stop is not None:
                print(
                    f"run: terminate received ({REASONS[stop.reason]}), "
                    f"{stop.grace_remaining // MS} ms of {stop.grace_period // MS} ms grace left",
                    flush=True,
                )
                if os.path.exists("/tmp/postStart_done"):
                    print("run: /tmp/postStart_done is there", flush=True)
                print("run: clean shutdown", flush=True)
                return  # exit code 0; raising Err(None) would end it with exit code 1


class Hooks(exports.Hooks):
    def post_start(self) -> hooks.HookOutcome:
        print("postStart: warming up", flush=True)
        warm_up = millis_from_env("POST_START_MS")
        if warm_up:
            monotonic_clock.subscribe_duration(warm_up * MS).block()
        try:
            with open("/tmp/postStart_done", "w") as done:
                done.write("warm\n")
        except OSError as error:
            return hooks.HookOutcome_Failed(str(error))
        print("postStart: done", flush=True)
        return hooks.HookOutcome_Done()

    def pre_stop(self) -> hooks.HookOutcome:
        left = control.grace_remaining() or 0
        print(f"preStop: draining, {left // MS} ms of grace left", flush=True)
        return hooks.HookOutcome_Done()
