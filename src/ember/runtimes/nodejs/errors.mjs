// The runtime client's errors and their wire shapes (AWS's Node client: src/Errors.js,
// src/XRayError.js). Error bodies are {"errorType","errorMessage","trace":[...]}; log lines
// show an error as "\t" + JSON with "errorType", "errorMessage", own properties and "stack".

import util from 'node:util';

const DEL = '\x7F';

function isErrorLike(obj) {
  return Boolean(
    obj &&
      typeof obj.name === 'string' &&
      obj.name &&
      typeof obj.message === 'string' &&
      obj.message &&
      typeof obj.stack === 'string' &&
      obj.stack,
  );
}

/** `err` itself when it is an Error, else an Error whose message is `err`. */
export function intoError(err) {
  return err instanceof Error ? err : new Error(err);
}

/** The body posted to /error and /init/error. */
export function toRapidResponse(error) {
  try {
    if (util.types.isNativeError(error) || isErrorLike(error)) {
      return {
        errorType: error.name?.replaceAll(DEL, '%7F'),
        errorMessage: error.message?.replaceAll(DEL, '%7F'),
        trace: error.stack.replaceAll(DEL, '%7F').split('\n'),
      };
    }
    return { errorType: typeof error, errorMessage: error.toString(), trace: [] };
  } catch {
    return {
      errorType: 'handled',
      errorMessage:
        'callback called with Error argument, but there was a problem while retrieving one or more of its message, name, and stack',
    };
  }
}

function withEnumerableProperties(value) {
  if (!(value instanceof Error)) {
    return value;
  }
  const shown = Object.assign(
    { errorType: value.name, errorMessage: value.message, code: value.code },
    value,
  );
  if (typeof value.stack === 'string') {
    shown.stack = value.stack.split('\n');
  }
  return shown;
}

/** An error as the text log shows it: a tab, then JSON. */
export function toFormatted(error) {
  try {
    return '\t' + JSON.stringify(error, (_key, value) => withEnumerableProperties(value));
  } catch {
    return '\t' + JSON.stringify(toRapidResponse(error));
  }
}

function stackEntries(err) {
  if (!err.stack) {
    return [];
  }
  const lines = err.stack.split('\n');
  lines.shift();
  return lines.map((stackLine) => {
    let line = stackLine.trim().replace(/\(|\)/g, '');
    line = line.substring(line.indexOf(' ') + 1);
    const cut = line.lastIndexOf(' ');
    const label = cut >= 0 ? line.slice(0, cut) : null;
    const where = (label ? line.slice(cut + 1) : line).split(':');
    return { path: where[0], line: parseInt(where[1]), label: label || 'anonymous' };
  });
}

/** The X-Ray cause header's JSON ('' when the error cannot be described). */
export function xrayCause(err) {
  try {
    const stack = stackEntries(err);
    return JSON.stringify({
      working_directory: process.cwd(),
      exceptions: [{ type: err.name, message: err.message, stack }],
      paths: Array.from(new Set(stack.map((entry) => entry.path))),
    });
  } catch {
    return '';
  }
}

export class ImportModuleError extends Error {}
export class HandlerNotFound extends Error {}
export class MalformedHandlerName extends Error {}
export class UserCodeSyntaxError extends Error {}
export class UnhandledPromiseRejection extends Error {
  constructor(reason, promise) {
    super(reason);
    this.reason = reason;
    this.promise = promise;
  }
}

for (const errorClass of [
  ImportModuleError,
  HandlerNotFound,
  MalformedHandlerName,
  UserCodeSyntaxError,
  UnhandledPromiseRejection,
]) {
  errorClass.prototype.name = `Runtime.${errorClass.name}`;
}
