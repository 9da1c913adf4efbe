// The handler's context and callback (AWS's Node client: src/InvokeContext.js,
// src/CallbackContext.js, src/BeforeExitListener.js).
//
// callbackWaitsForEmptyEventLoop (default true): a callback(null, result) is posted only
// once the event loop is empty ('beforeExit'); with false, at once. Promises returned by
// async handlers are posted when they settle. Only the first of callback/succeed/fail/done
// counts. A handler that never answers is answered with null when the loop empties.

import { setCurrentRequestId, setCurrentTenantId, structuredConsole } from './logging.mjs';

const LISTENER = Symbol.for('aws.lambda.beforeExit');
const NO_OP = () => {};

export const beforeExit = {
  invoke: () => globalThis[LISTENER](),
  reset: () => (globalThis[LISTENER] = NO_OP),
  set: (listener) => (globalThis[LISTENER] = listener),
};

function parseJson(text, name) {
  if (text === undefined) {
    return undefined;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new Error(`Cannot parse ${name} as json: ${err.toString()}`);
  }
}

/** What one /next answer says about its invocation. */
export class InvokeContext {
  constructor(headers) {
    this.headers = Object.fromEntries(
      Object.entries(headers).map(([key, value]) => [key.toLowerCase(), value]),
    );
  }

  get invokeId() {
    const id = this.headers['lambda-runtime-aws-request-id'];
    if (!id) {
      throw new Error('invocation id is missing or invalid');
    }
    return id;
  }

  updateLoggingContext() {
    setCurrentRequestId(this.invokeId);
    setCurrentTenantId(this.headers['lambda-runtime-aws-tenant-id']);
  }

  /** `callbackContext` with the invocation's and the environment's fields added. */
  attachEnvironmentData(callbackContext) {
    const trace = this.headers['lambda-runtime-trace-id'];
    if (trace) {
      process.env._X_AMZN_TRACE_ID = trace;
    } else {
      delete process.env._X_AMZN_TRACE_ID;
    }
    const env = process.env;
    const deadline = Number(this.headers['lambda-runtime-deadline-ms'] || 0);
    return Object.assign(callbackContext, {
      functionVersion: env.AWS_LAMBDA_FUNCTION_VERSION,
      functionName: env.AWS_LAMBDA_FUNCTION_NAME,
      memoryLimitInMB: env.AWS_LAMBDA_FUNCTION_MEMORY_SIZE,
      logGroupName: env.AWS_LAMBDA_LOG_GROUP_NAME,
      logStreamName: env.AWS_LAMBDA_LOG_STREAM_NAME,
      clientContext: parseJson(this.headers['lambda-runtime-client-context'], 'ClientContext'),
      identity: parseJson(this.headers['lambda-runtime-cognito-identity'], 'CognitoIdentity'),
      invokedFunctionArn: this.headers['lambda-runtime-invoked-function-arn'],
      awsRequestId: this.headers['lambda-runtime-aws-request-id'],
      tenantId: this.headers['lambda-runtime-aws-tenant-id'],
      getRemainingTimeInMillis: () => deadline - Date.now(),
    });
  }
}

function rawCallbackContext(client, id, scheduleNext) {
  const postError = (err, next) => {
    structuredConsole.logError('Invoke Error', err);
    client.postInvocationError(err, id, next);
  };
  let completed = false;
  const complete = (result, next) => {
    if (completed) {
      console.error(
        'Invocation has already been reported as done. Cannot call complete more than once per invocation.',
      );
      return;
    }
    completed = true;
    client.postInvocationResponse(result, id, next);
  };
  let waitForEmptyEventLoop = true;

  const callback = (err, result) => {
    beforeExit.reset();
    if (err !== undefined && err !== null) {
      postError(err, scheduleNext);
    } else if (!waitForEmptyEventLoop) {
      complete(result, scheduleNext);
    } else {
      beforeExit.set(() => setImmediate(() => complete(result, scheduleNext)));
    }
  };
  const done = (err, result) => {
    beforeExit.reset();
    if (err !== undefined && err !== null) {
      postError(err, scheduleNext);
    } else {
      complete(result, scheduleNext);
    }
  };
  const callbackContext = {
    get callbackWaitsForEmptyEventLoop() {
      return waitForEmptyEventLoop;
    },
    set callbackWaitsForEmptyEventLoop(value) {
      waitForEmptyEventLoop = value;
    },
    succeed: (result) => done(null, result),
    fail: (err) => (err === undefined || err === null ? done('handled') : done(err, null)),
    done,
  };
  return [callback, callbackContext, () => (completed = true)];
}

/** [callback, context, markCompleted] for one invocation; only the first answer counts. */
export function buildCallbackContext(client, id, scheduleNext) {
  const [callback, callbackContext, markCompleted] = rawCallbackContext(client, id, scheduleNext);
  let finished = false;
  const firstOnly =
    (fn) =>
    (...args) => {
      if (!finished) {
        fn(...args);
        finished = true;
      }
    };
  callbackContext.succeed = firstOnly(callbackContext.succeed);
  callbackContext.fail = firstOnly(callbackContext.fail);
  callbackContext.done = firstOnly(callbackContext.done);
  return [firstOnly(callback), callbackContext, markCompleted];
}
