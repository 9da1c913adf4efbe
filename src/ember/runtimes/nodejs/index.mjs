// Ember's Node.js runtime client: the entry point, run as
//   node [flags] /var/runtime/index.mjs
// with the Lambda environment (_HANDLER, LAMBDA_TASK_ROOT, AWS_LAMBDA_RUNTIME_API, ...).
// Plain node core modules only. It reproduces what AWS's aws-lambda-nodejs-runtime-interface-
// client (the one in the nodejs20.x/22.x images) does, as seen from the Runtime API, the
// function and its logs; modules: loader (handler resolution), runtime (invoke loop),
// context (context and callback), streaming (awslambda.streamifyResponse), client (Runtime
// API over http), logging, errors.
//
// Not reproduced: the telemetry log fd, the alternative/native client switches.
//
// Pre-started (_EMBER_PRESTART_FD set, see prestart.mjs): the modules above are loaded,
// then it waits for the function's working directory and environment before start().

import { createRequire } from 'node:module';
import { RuntimeClient } from './client.mjs';
import { beforeExit } from './context.mjs';
import { UnhandledPromiseRejection } from './errors.mjs';
import { loadHandler } from './loader.mjs';
import { patchConsole, structuredConsole } from './logging.mjs';
import { awaitSpecialisation, warmUp } from './prestart.mjs';
import { Runtime } from './runtime.mjs';
import { defineGlobal, isStreaming } from './streaming.mjs';

// User modules are required from here: a missing one reports "Require stack: - <this file>".
const require = createRequire(import.meta.url);

async function start() {
  patchConsole();
  const client = new RuntimeClient(process.env.AWS_LAMBDA_RUNTIME_API);
  // Until the first invocation, failures are init errors; Runtime replaces these.
  const errorCallbacks = {
    uncaughtException: (error) => client.postInitError(error, () => process.exit(129)),
    unhandledRejection: (error) => client.postInitError(error, () => process.exit(128)),
  };
  process.on('uncaughtException', (error) => {
    structuredConsole.logError('Uncaught Exception', error);
    errorCallbacks.uncaughtException(error);
  });
  process.on('unhandledRejection', (reason, promise) => {
    const error = new UnhandledPromiseRejection(reason, promise);
    structuredConsole.logError('Unhandled Promise Rejection', error);
    errorCallbacks.unhandledRejection(error);
  });
  beforeExit.reset();
  process.on('beforeExit', beforeExit.invoke);
  const appRoot = process.env.LAMBDA_TASK_ROOT || process.cwd();
  defineGlobal();
  const handler = await loadHandler(require, appRoot, process.env._HANDLER ?? '');
  new Runtime(client, handler, errorCallbacks, isStreaming(handler)).scheduleIteration();
}

const prestartFd = process.env._EMBER_PRESTART_FD;
if (prestartFd !== undefined) {
  await warmUp();
  awaitSpecialisation(Number(prestartFd));
}
await start();
