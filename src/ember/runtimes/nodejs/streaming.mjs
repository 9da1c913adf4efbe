// Response streaming (AWS's Node client: src/ResponseStream.js, src/StreamingContext.js,
// src/HttpResponseStream.js, the `awslambda` global of src/UserFunction.js).
//
// `awslambda.streamifyResponse(handler)` marks a handler; it is called with
// (event, responseStream, context) and its writes go out as one chunked POST /response with
// `Lambda-Runtime-Function-Response-Mode: streaming` (Content-Type application/octet-stream
// unless set before the first write). A failure ends the body with the trailers
// Lambda-Runtime-Function-Error-Type and -Body (the error JSON, base64). Ember's Runtime
// API buffers the stream: callers get the whole body at its end.

import { toRapidResponse } from './errors.mjs';
import { beforeExit } from './context.mjs';
import { structuredConsole } from './logging.mjs';

export const HANDLER_STREAMING = Symbol.for('aws.lambda.runtime.handler.streaming');
export const STREAM_RESPONSE = 'response';
const HANDLER_HIGHWATERMARK = Symbol.for('aws.lambda.runtime.handler.streaming.highWaterMark');
const TRAILER_ERROR_TYPE = 'Lambda-Runtime-Function-Error-Type';
const TRAILER_ERROR_BODY = 'Lambda-Runtime-Function-Error-Body';
const PRELUDE_CONTENT_TYPE = 'application/vnd.awslambda.http-integration-response';
const DELIMITER_LEN = 8;

export class InvalidStreamingOperation extends Error {}
export class MalformedStreamingHandler extends Error {}
InvalidStreamingOperation.prototype.name = 'Runtime.InvalidStreamingOperation';
MalformedStreamingHandler.prototype.name = 'Runtime.MalformedStreamingHandler';

class HttpResponseStream {
  static from(underlyingStream, prelude) {
    underlyingStream.setContentType(PRELUDE_CONTENT_TYPE);
    const metadataPrelude = JSON.stringify(prelude);
    underlyingStream._onBeforeFirstWrite = (write) => {
      write(metadataPrelude);
      write(new Uint8Array(DELIMITER_LEN));
    };
    return underlyingStream;
  }
}

/** Defines `globalThis.awslambda` unless AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA is 1/true. */
export function defineGlobal() {
  const off = process.env.AWS_LAMBDA_NODEJS_NO_GLOBAL_AWSLAMBDA;
  if (off === '1' || off === 'true') {
    return;
  }
  globalThis.awslambda = {
    streamifyResponse: (handler, options) => {
      handler[HANDLER_STREAMING] = STREAM_RESPONSE;
      if (typeof options?.highWaterMark === 'number') {
        handler[HANDLER_HIGHWATERMARK] = parseInt(options.highWaterMark);
      }
      return handler;
    },
    HttpResponseStream,
  };
}

/** Whether `handler` streams its response; throws on a mark other than "response". */
export function isStreaming(handler) {
  const mark = handler[HANDLER_STREAMING];
  if (mark === undefined || mark === null || mark === false) {
    return false;
  }
  if (mark === STREAM_RESPONSE) {
    return true;
  }
  throw new MalformedStreamingHandler('Only response streaming is supported.');
}

/** The writable side of a chunked POST: the `responseStream` handed to the handler. */
function createResponseStream(request) {
  let firstWrite = true;
  const write = request.write.bind(request);
  request.setContentType = (contentType) => {
    if (!firstWrite) {
      throw new InvalidStreamingOperation('Cannot set content-type, too late.');
    }
    request.setHeader('Content-Type', contentType);
  };
  request.write = function (chunk, encoding, callback) {
    if (typeof chunk !== 'string' && !Buffer.isBuffer(chunk) && chunk?.constructor !== Uint8Array) {
      chunk = JSON.stringify(chunk);
    }
    if (firstWrite && typeof this._onBeforeFirstWrite === 'function') {
      this._onBeforeFirstWrite((data) => write(data));
    }
    firstWrite = false;
    return write(chunk, encoding, callback);
  };
  return request;
}

/** {responseStream, responseDone, fail(err, callback)} for one invocation's answer. */
export function openResponseStream(client, id) {
  let resolveDone;
  let rejectDone;
  const responseDone = new Promise((resolve, reject) => {
    resolveDone = resolve;
    rejectDone = reject;
  });
  const request = client.streamingResponseRequest(id, (response) => {
    response.on('data', () => {});
    response.on('aborted', (err) => rejectDone(err));
    response.on('end', () => resolveDone());
  });
  request.on('error', (err) => {
    rejectDone(err);
    request.destroy(err);
  });
  const responseStream = createResponseStream(request);
  const fail = (err, callback) => {
    structuredConsole.logError('Invoke Error', err);
    const error = toRapidResponse(err);
    request.addTrailers({
      [TRAILER_ERROR_TYPE]: error.errorType,
      [TRAILER_ERROR_BODY]: Buffer.from(JSON.stringify(error)).toString('base64'),
    });
    request.end(callback);
  };
  return { responseStream, responseDone, fail };
}

/** The streaming handler's context part: the flag, and when to go on to the next event. */
export function streamingContext(scheduleNext) {
  let waitForEmptyEventLoop = true;
  const context = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
  };
  const next = () => {
    beforeExit.reset();
    if (!waitForEmptyEventLoop) {
      scheduleNext();
    } else {
      beforeExit.set(() => setImmediate(scheduleNext));
    }
  };
  return [context, next];
}
