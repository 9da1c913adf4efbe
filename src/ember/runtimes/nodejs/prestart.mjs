// A pre-started node's wait for its function (no counterpart in AWS's client).
//
// A pooled sandbox may start `node [flags] /var/runtime/index.mjs` before any function is
// known, with _EMBER_PRESTART_FD naming a connected socket: node loads itself and every
// module of the client, says "R" on the socket, then blocks in a read until the agent
// sends the START's part (4-byte big-endian length, then JSON {"cwd", "env"}). It then
// takes that working directory and exactly that environment (the pre-start one is
// dropped), closes the socket, and the client starts as a fresh one would: the handler
// module is loaded only after. EOF instead of a START (the sandbox was discarded): exit 0.

import fs from 'node:fs';

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
