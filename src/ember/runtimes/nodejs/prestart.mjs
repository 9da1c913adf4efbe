// A pre-started node's wait for its function (no counterpart in AWS's client).
//
// A pooled sandbox may start `node [flags] /var/runtime/index.mjs` before any function is
// known, with _EMBER_PRESTART_FD naming a connected socket: node loads itself and every
// module of the client, says "R" on the socket, then blocks in a read until the agent
// sends the START's part (4-byte big-endian length, then JSON {"cwd", "env"}). It then
// takes that working directory and exactly that environment (the pre-start one is
// dropped), closes the socket, and the client starts as a fresh one would: the handler
// module is loaded only after. EOF instead of a START (the sandbox was discarded): exit 0.
//
// Before it says "R", warmUp() runs the client's Runtime API calls once (a /next and a
// response) against a throwaway server on the sandbox's loopback, with a client and agent
// of its own, all closed after: V8 compiles those paths now rather than in the cold
// start (a few ms). Nothing of it is left for the function: no handle, no listener, the
// `http` module's global agent untouched, and no DNS state: the server listens without a
// host, as a host (even an address) would make node read /etc/resolv.conf now, which a
// networked sandbox only gets at specialisation (c-ares would keep the generic one).

import fs from 'node:fs';
import http from 'node:http';
import { RuntimeClient } from './client.mjs';

function readExactly(fd, size) {
  const buffer = Buffer.alloc(size);
  let done = 0;
  while (done < size) {
    const n = fs.readSync(fd, buffer, done, size - done, null);
    if (n === 0) {
      return null;
    }
    done += n;
  }
  return buffer;
}

/** Wait on `fd` for the function's working directory and environment, then take them. */
export function awaitSpecialisation(fd) {
  fs.writeSync(fd, 'R');
  const header = readExactly(fd, 4);
  const body = header && readExactly(fd, header.readUInt32BE(0));
  if (!body) {
    process.exit(0);
  }
  fs.closeSync(fd);
  const { cwd, env } = JSON.parse(body.toString('utf8'));
  process.chdir(cwd);
  for (const key of Object.keys(process.env)) {
    delete process.env[key];
  }
  Object.assign(process.env, env);
}

/** One Runtime API round (a /next, a posted response) against a throwaway local server. */
export async function warmUp() {
  const server = http.createServer((request, response) => {
    request.resume();
    request.on('end', () => {
      response.setHeader('Lambda-Runtime-Aws-Request-Id', 'warm-up');
      response.end('{}');
    });
  });
  try {
    await new Promise((resolve, reject) => {
      server.once('error', reject);
      server.listen(0, resolve); // no host: one would initialise c-ares (reads resolv.conf)
    });
    const client = new RuntimeClient(`127.0.0.1:${server.address().port}`);
    await client.nextInvocation();
    await new Promise((resolve) => client.postInvocationResponse({ warm: true }, 'warm-up', resolve));
    client.agent.destroy();
  } catch {
    // only a warm-up: the start works the same without it
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(() => resolve()));
  }
}
