// The invoke loop (AWS's Node client: src/Runtime.js).
//
// Each iteration starts on a fresh turn of the event loop (setImmediate): GET /next, call
// the handler with (event, context, callback), and post what it answers. The next
// iteration is scheduled by whatever posts the answer, so a callback that waits for the
// empty event loop delays the next /next too. During an invocation an uncaught exception
// or unhandled rejection is posted as that invocation's error, then the process exits
// (129 and 128), as AWS's client does.

import { beforeExit, buildCallbackContext, InvokeContext } from './context.mjs';
import { openResponseStream, streamingContext } from './streaming.mjs';

function isPromise(value) {
  return value && value.then && typeof value.then === 'function';
}

export class Runtime {
  constructor(client, handler, errorCallbacks, streaming = false) {
    this.client = client;
    this.handler = handler;
    this.errorCallbacks = errorCallbacks;
    this.handleOnce = streaming ? this.handleOnceStreaming : this.handleOnceBuffered;
  }

  scheduleIteration() {
    setImmediate(() => {
      this.handleOnce().then(
        () => {},
        (err) => {
          console.log(`Unexpected Top Level Error: ${err.toString()}`);
          this.errorCallbacks.uncaughtException(err);
        },
      );
    });
  }

  async handleOnceBuffered() {
    const { bodyJson, headers } = await this.client.nextInvocation();
    const invokeContext = new InvokeContext(headers);
    invokeContext.updateLoggingContext();
    const [callback, callbackContext, markCompleted] = buildCallbackContext(
      this.client,
      invokeContext.invokeId,
      this.scheduleIteration.bind(this),
    );
    try {
      this.setErrorCallbacks(invokeContext.invokeId);
      this.setDefaultExitListener(invokeContext.invokeId, markCompleted);
      const result = this.handler(
        JSON.parse(bodyJson),
        invokeContext.attachEnvironmentData(callbackContext),
        callback,
      );
      if (isPromise(result)) {
        result.then(callbackContext.succeed, callbackContext.fail).catch(callbackContext.fail);
      }
    } catch (err) {
      callback(err);
    }
  }

  /** A streamified handler: (event, responseStream, context), answered through the stream. */
  async handleOnceStreaming() {
    const { bodyJson, headers } = await this.client.nextInvocation();
    const invokeContext = new InvokeContext(headers);
    invokeContext.updateLoggingContext();
    const [context, scheduleNext] = streamingContext(this.scheduleIteration.bind(this));
    const { responseStream, responseDone, fail } = openResponseStream(
      this.client,
      invokeContext.invokeId,
    );
    try {
      this.setErrorCallbacks(invokeContext.invokeId);
      beforeExit.set(() => this.scheduleIteration());
      const ctx = invokeContext.attachEnvironmentData(context);
      const result = this.handler(JSON.parse(bodyJson), responseStream, ctx);
      if (!isPromise(result)) {
        fail('Streaming does not support non-async handlers.', scheduleNext);
        return;
      }
      if ((await result) !== undefined) {
        console.warn('Streaming handlers ignore return values.');
      }
      await responseDone;
      if (!responseStream.writableFinished) {
        fail('Response stream is not finished.', scheduleNext);
        return;
      }
      scheduleNext();
    } catch (err) {
      fail(err, scheduleNext);
    }
  }

  setErrorCallbacks(invokeId) {
    this.errorCallbacks.uncaughtException = (error) => {
      this.client.postInvocationError(error, invokeId, () => process.exit(129));
    };
    this.errorCallbacks.unhandledRejection = (error) => {
      this.client.postInvocationError(error, invokeId, () => process.exit(128));
    };
  }

  /** A handler that neither returns a promise nor calls back is answered with null. */
  setDefaultExitListener(invokeId, markCompleted) {
    beforeExit.set(() => {
      markCompleted();
      this.client.postInvocationResponse(null, invokeId, () => this.scheduleIteration());
    });
  }
}
