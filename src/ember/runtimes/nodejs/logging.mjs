// Function logs (AWS's Node client: src/LogPatch.js, stdout variant). The console's methods
// write one line per call to stdout, newlines inside a message turned into "\r":
//   text: <ISO time>\t<request id>\t<LEVEL>\t<util.format(...)>
//   JSON (AWS_LAMBDA_LOG_FORMAT=JSON): {"timestamp","level","requestId",["tenantId"],"message",...}
// AWS_LAMBDA_LOG_LEVEL drops the levels below it. The request id is "undefined" during init.

import util from 'node:util';
import { intoError, toFormatted } from './errors.mjs';

const REQUEST_ID = Symbol.for('aws.lambda.runtime.requestId');
const TENANT_ID = Symbol.for('aws.lambda.runtime.tenantId');

const LEVELS = Object.freeze({
  TRACE: { name: 'TRACE', priority: 1 },
  DEBUG: { name: 'DEBUG', priority: 2 },
  INFO: { name: 'INFO', priority: 3 },
  WARN: { name: 'WARN', priority: 4 },
  ERROR: { name: 'ERROR', priority: 5 },
  FATAL: { name: 'FATAL', priority: 6 },
});

export function setCurrentRequestId(id) {
  globalThis[REQUEST_ID] = id;
}

export function setCurrentTenantId(id) {
  globalThis[TENANT_ID] = id;
}

function jsonErrorReplacer(_key, value) {
  if (value instanceof Error) {
    return Object.assign(
      {
        errorType: value?.constructor?.name ?? 'UnknownError',
        errorMessage: value.message,
        stackTrace: typeof value.stack === 'string' ? value.stack.split('\n') : value.stack,
      },
      value,
    );
  }
  return value;
}

function formatJson(level, params) {
  const result = {
    timestamp: new Date().toISOString(),
    level: level.name,
    requestId: globalThis[REQUEST_ID],
  };
  const tenantId = globalThis[TENANT_ID];
  if (tenantId !== undefined && tenantId !== null) {
    result.tenantId = tenantId;
  }
  if (params.length === 1) {
    result.message = params[0];
    try {
      return JSON.stringify(result, jsonErrorReplacer);
    } catch {
      result.message = util.format(result.message);
      return JSON.stringify(result);
    }
  }
  result.message = util.format(...params);
  const error = params.find((param) => param instanceof Error);
  if (error) {
    result.errorType = error?.constructor?.name ?? 'UnknownError';
    result.errorMessage = error.message;
    result.stackTrace = typeof error.stack === 'string' ? error.stack.split('\n') : [];
  }
  return JSON.stringify(result);
}

function formatText(level, params) {
  const time = new Date().toISOString();
  return `${time}\t${globalThis[REQUEST_ID]}\t${level.name}\t${util.format(...params)}`;
}

function writer(format) {
  return (level, params) => {
    process.stdout.write(format(level, params).replace(/\n/g, '\r') + '\n');
  };
}

/** `logError(message, err)`: how the runtime itself logs an error, in the chosen format. */
export const structuredConsole = { logError: () => {} };

/** Replace the console's methods; call once, before any user code runs. */
export function patchConsole() {
  const json = process.env.AWS_LAMBDA_LOG_FORMAT?.toUpperCase() === 'JSON';
  const log = writer(json ? formatJson : formatText);
  const threshold = LEVELS[process.env.AWS_LAMBDA_LOG_LEVEL?.toUpperCase()] ?? LEVELS.TRACE;
  const method = (level) =>
    level.priority >= threshold.priority ? (msg, ...params) => log(level, [msg, ...params]) : () => {};
  console.trace = method(LEVELS.TRACE);
  console.debug = method(LEVELS.DEBUG);
  console.info = method(LEVELS.INFO);
  console.log = console.info;
  console.warn = method(LEVELS.WARN);
  console.error = method(LEVELS.ERROR);
  console.fatal = (msg, ...params) => log(LEVELS.FATAL, [msg, ...params]);
  structuredConsole.logError = json
    ? (_message, err) => console.error(intoError(err))
    : (message, err) => console.error(message, toFormatted(intoError(err)));
}
