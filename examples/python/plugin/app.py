"""A plugin of the plugin-host example, in Python (componentize-py, world `example:plugins/plugin`).

It exports `handler.on-message`, which the host calls on a fresh instance for every message,
and calls its host back through `host.log` and `host.get-config`. It answers as the Rust example
plugins do:

- `sleep MS`: sleeps MS milliseconds, then answers `slept MS ms`;
- `spin`: loops forever (only the kill at the deadline ends it);
- `fail`: answers an error;
- anything else: `GREETING, MESSAGE!`, with the greeting the host configures (`Hello`).
"""

import time

from wit_world import exports
from wit_world.imports import host
from componentize_py_types import Err


class Handler(exports.Handler):
    def on_message(self, message: str) -> str:
        verb, _, rest = message.partition(" ")
        if verb == "sleep":
            ms = int(rest)
            host.log(f"sleeping {ms} ms (Python)")
            time.sleep(ms / 1000)
            return f"slept {ms} ms"
        if verb == "spin":
            host.log("spinning (Python)")
            n = 0
            while True:
                n += 1
        if verb == "fail":
            raise Err("asked to fail")
        greeting = host.get_config("greeting") or "Hello"
        return f"{greeting}, {message}!"
