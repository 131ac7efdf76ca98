// A lifecycle-aware HTTP service for wasmlet, in JavaScript (componentize-js, world
// `wasmlet:guests/web`).
//
// It exports `wasi:http/incoming-handler` (no `run`: the container runs as long as it serves) and
// the lifecycle hooks. Every request, and each hook, runs in a fresh instance of the component:
// they share the container's `/tmp`, not memory, so the readiness flag is the file `/tmp/ready`
// (through `wasi:filesystem`, which StarlingMonkey offers no JavaScript API for).
//
// - postStart warms up (`POST_START_MS`), creates `/tmp/ready` and calls `setReady(true)`;
// - preStop removes it and calls `setReady(false)` (wasmlet then sends no new traffic), and says
//   how much grace is left;
// - `GET /healthz` answers 200 `ready` while `/tmp/ready` exists, 503 `not ready` otherwise;
// - `GET /` answers `hello from JavaScript`; anything else 404.

import { setReady, graceRemaining } from 'wasmlet:lifecycle/control@0.1.0';
import { subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';
import { getDirectories } from 'wasi:filesystem/preopens@0.2.12';
import {
  Fields,
  OutgoingBody,
  OutgoingResponse,
  ResponseOutparam,
} from 'wasi:http/types@0.2.12';

const MS = 1_000_000n; // WIT durations are nanoseconds, u64 is a BigInt
const encoder = new TextEncoder();

// The container's /tmp preopen, and the flag's name in it.
function tmp() {
  const found = getDirectories().find(([, path]) => path === '/tmp');
  if (!found) throw new Error('no /tmp preopen');
  return found[0];
}

function isReady() {
  try {
    tmp().statAt({}, 'ready');
    return true;
  } catch {
    return false; // error-code `no-entry`
  }
}

function setReadyFlag(ready) {
  if (ready) {
    tmp().openAt({}, 'ready', { create: true }, { write: true });
  } else if (isReady()) {
    tmp().unlinkFileAt('ready');
  }
  setReady(ready);
}

function respond(responseOut, status, text) {
  const response = new OutgoingResponse(
    Fields.fromList([['content-type', encoder.encode('text/plain')]]),
  );
  response.setStatusCode(status);
  const body = response.body();
  ResponseOutparam.set(responseOut, { tag: 'ok', val: response });
  const stream = body.write();
  stream.blockingWriteAndFlush(encoder.encode(text));
  stream[Symbol.dispose](); // the stream must be dropped before the body is finished
  OutgoingBody.finish(body, undefined);
}

export const incomingHandler = {
  handle(request, responseOut) {
    const path = (request.pathWithQuery() ?? '/').split('?')[0];
    if (path === '/healthz') {
      if (isReady()) respond(responseOut, 200, 'ready\n');
      else respond(responseOut, 503, 'not ready\n');
    } else if (path === '/') {
      respond(responseOut, 200, 'hello from JavaScript\n');
    } else {
      respond(responseOut, 404, `no route for ${path}\n`);
    }
  },
};

export const hooks = {
  postStart() {
    console.log('postStart: warming up');
    const found = getEnvironment().find(([key]) => key === 'POST_START_MS');
    const warmUp = found ? BigInt(found[1]) : 0n;
    if (warmUp > 0n) subscribeDuration(warmUp * MS).block();
    setReadyFlag(true);
    console.log('postStart: ready');
    return { tag: 'done' };
  },
  preStop() {
    setReadyFlag(false);
    const left = graceRemaining() ?? 0n;
    console.log(`preStop: not ready any more, draining, ${left / MS} ms of grace left`);
    return { tag: 'done' };
  },
};
