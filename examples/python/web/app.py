"""A lifecycle-aware HTTP service for wasmlet, in Python (componentize-py, world `wasmlet:guests/web`).

It exports `wasi:http/incoming-handler` (no `run`: the container runs as long as it serves) and
the lifecycle hooks. Every request, and each hook, runs in a fresh instance of the component:
they share the container's `/tmp`, not memory, so the readiness flag is the file `/tmp/ready`.

- postStart warms up (`POST_START_MS`), creates `/tmp/ready` and calls `control.set_ready(True)`;
- preStop removes it and calls `control.set_ready(False)` (wasmlet then sends no new traffic),
  and says how much grace is left;
- `GET /healthz` answers 200 `ready` while `/tmp/ready` exists, 503 `not ready` otherwise;
- `GET /` answers `hello from Python`; anything else 404.
"""

import os

from componentize_py_types import Ok
from wit_world import exports
from wit_world.exports import hooks
from wit_world.imports import control, monotonic_clock
from wit_world.imports.wasi_http_types import (
    Fields,
    IncomingRequest,
    OutgoingBody,
    OutgoingResponse,
    ResponseOutparam,
)

MS = 1_000_000  # WIT durations are nanoseconds
READY = "/tmp/ready"


def respond(response_out, status, text):
    response = OutgoingResponse(Fields.from_list([("content-type", b"text/plain")]))
    response.set_status_code(status)
    body = response.body()
    ResponseOutparam.set(response_out, Ok(response))
    stream = body.write()
    stream.blocking_write_and_flush(text.encode())
    stream.__exit__(None, None, None)  # the stream must be dropped before the body is finished
    OutgoingBody.finish(body, None)


class IncomingHandler(exports.IncomingHandler):
    def handle(self, request: IncomingRequest, response_out: ResponseOutparam) -> None:
        path = (request.path_with_query() or "/").split("?")[0]
        if path == "/healthz":
            if os.path.exists(READY):
                respond(response_out, 200, "ready\n")
            else:
                respond(response_out, 503, "not ready\n")
        elif path == "/":
            respond(response_out, 200, "hello from Python\n")
        else:
            respond(response_out, 404, f"no route for {path}\n")


class Hooks(exports.Hooks):
    def post_start(self) -> hooks.HookOutcome:
        print("postStart: warming up", flush=True)
        warm_up = int(os.environ.get("POST_START_MS", "0"))
        if warm_up:
            monotonic_clock.subscribe_duration(warm_up * MS).block()
        with open(READY, "w") as flag:
            flag.write("ready\n")
        control.set_ready(True)
        print("postStart: ready", flush=True)
        return hooks.HookOutcome_Done()

    def pre_stop(self) -> hooks.HookOutcome:
        if os.path.exists(READY):
            os.remove(READY)
        control.set_ready(False)
        left = control.grace_remaining() or 0
        print(f"preStop: not ready any more, draining, {left // MS} ms of grace left", flush=True)
        return hooks.HookOutcome_Done()
