// A lifecycle-aware worker for wasmlet, in JavaScript (componentize-js through jco, world
// `wasmlet:guests/worker`).
//
// - `run.run` (`wasi:cli/run`) works in a loop: each round it polls the termination pollable
//   (`control.subscribeTermination`) beside a 500 ms timer, and on terminate prints the reason and
//   the grace left, then returns: exit code 0, reason `Completed`.
// - `hooks.postStart` warms up (`POST_START_MS`); `hooks.preStop` says how much grace is left
//   when the stop begins.
//
// Each of the three runs in an instance of its own: they share the container's env and args, not
// memory. Knobs (env): `POST_START_MS` — how long postStart takes; `WORK_MS` — exit on its own
// after this long.

import {
  subscribeTermination,
  terminationRequested,
  graceRemaining,
} from 'wasmlet:lifecycle/control@0.1.0';
import { poll } from 'wasi:io/poll@0.2.12';
import { now, subscribeDuration } from 'wasi:clocks/monotonic-clock@0.2.12';
import { getEnvironment } from 'wasi:cli/environment@0.2.12';

const MS = 1_000_000n; // WIT durations are nanoseconds, u64 is a BigInt

function millisFromEnv(name) {
  const found = getEnvironment().find(([key]) => key === name);
  return found && /^\d+$/.test(found[1]) ? BigInt(found[1]) : undefined;
}

// Blocks until terminate arrives or `timeoutNs` passes; the termination, or undefined.
function waitForTermination(timeoutNs) {
  const terminate = subscribeTermination();
  const timer = subscribeDuration(timeoutNs);
  const ready = poll([terminate, timer]);
  // Pollables are resources: drop them now rather than when the garbage collector does.
  timer[Symbol.dispose]();
  terminate[Symbol.dispose]();
  return ready.includes(0) ? terminationRequested() : undefined;
}

export const run = {
  run() {
    console.log('run: started, working until terminated');
    const started = now();
    const workMs = millisFromEnv('WORK_MS');
    for (;;) {
      let wait = 500n * MS;
      if (workMs !== undefined) {
        const left = started + workMs * MS - now();
        if (left <= 0n) {
          console.log('run: work finished, exiting on my own');
          return;
        }
        if (left < wait) wait = left;
      }
      const stop = waitForTermination(wait);
      if (stop !== undefined) {
        console.log(
          `run: terminate received (${stop.reason}), ` +
            `${stop.graceRemaining / MS} ms of ${stop.gracePeriod / MS} ms grace left`,
        );
        console.log('run: clean shutdown');
        return; // exit code 0; throwing would end it with exit code 1
      }
    }
  },
};

export const hooks = {
  postStart() {
    console.log('postStart: warming up');
    const warmUp = millisFromEnv('POST_START_MS');
    if (warmUp) subscribeDuration(warmUp * MS).block();
    console.log('postStart: done');
    return { tag: 'done' };
  },
  preStop() {
    const left = graceRemaining() ?? 0n;
    console.log(`preStop: draining, ${left / MS} ms of grace left`);
    return { tag: 'done' };
  },
};
