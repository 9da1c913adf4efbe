// The Runtime API 2018-06-01 client over node's core http, one keep-alive connection
// (AWS's Node client: src/RAPIDClient.js, whose native addon does what this does in JS).
// As with the addon, the outcome of posting a response or an error is not checked; a
// failed /next rejects; /init/error carries Lambda-Runtime-Function-Error-Type.

import http from 'node:http';
import { toRapidResponse, xrayCause } from './errors.mjs';

const API = '/2018-06-01/runtime';
const ERROR_TYPE_HEADER = 'Lambda-Runtime-Function-Error-Type';
const XRAY_CAUSE_HEADER = 'Lambda-Runtime-Function-XRay-Error-Cause';
// AWS's client skips causes of 1 MiB or more; Ember's Runtime API takes request heads up to
// 64 KiB and ignores the cause, so a larger one is left out rather than refused.
const MAX_XRAY_CAUSE = 16 * 1024;

function serialize(body) {
  let text;
  try {
    text = JSON.stringify(body === undefined ? null : body);
  } catch {
    throw new Error('Unable to stringify response body');
  }
  if (typeof text !== 'string') {
    throw new TypeError('Wrong arguments'); // what the native client says to a non-string
  }
  return text;
}

/** A header value node accepts: characters past Latin-1 as JSON-style \u escapes. */
function headerSafe(value) {
  return value.replace(/[^\t\x20-\x7e]/g, (c) => '\\u' + c.charCodeAt(0).toString(16).padStart(4, '0'));
}

export class RuntimeClient {
  constructor(hostPort) {
    const cut = hostPort.lastIndexOf(':');
    this.hostname = hostPort.slice(0, cut).replace(/^\[|\]$/g, '') || '127.0.0.1';
    this.port = parseInt(hostPort.slice(cut + 1), 10);
    this.agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  }

  /** Resolves to {bodyJson, headers} (header names lower-case). */
  nextInvocation() {
    return new Promise((resolve, reject) => {
      const request = this._request('GET', `${API}/invocation/next`, {}, (response) => {
        const chunks = [];
        response.on('data', (chunk) => chunks.push(chunk));
        response.on('error', reject);
        response.on('end', () => {
          const requestId = response.headers['lambda-runtime-aws-request-id'];
          if (response.statusCode !== 200 || !requestId) {
            reject(new Error(`Failed to get next invocation, error ${response.statusCode}`));
            return;
          }
          resolve({ bodyJson: Buffer.concat(chunks).toString('utf8'), headers: response.headers });
        });
      });
      request.on('error', reject);
      request.end();
    });
  }

  postInvocationResponse(response, id, callback) {
    const path = `${API}/invocation/${encodeURIComponent(id)}/response`;
    this._post(path, serialize(response), {}, callback);
  }

  postInvocationError(error, id, callback) {
    const body = serialize(toRapidResponse(error));
    const cause = xrayCause(error);
    const headers = {};
    if (cause && Buffer.byteLength(cause) < MAX_XRAY_CAUSE) {
      headers[XRAY_CAUSE_HEADER] = headerSafe(cause);
    }
    this._post(`${API}/invocation/${encodeURIComponent(id)}/error`, body, headers, callback);
  }

  postInitError(error, callback) {
    const response = toRapidResponse(error);
    const headers = { [ERROR_TYPE_HEADER]: headerSafe(String(response.errorType)) };
    this._post(`${API}/init/error`, serialize(response), headers, callback);
  }

  /** The chunked POST /response of a streaming handler; the caller writes and ends it. */
  streamingResponseRequest(id, onResponse) {
    const headers = {
      'Lambda-Runtime-Function-Response-Mode': 'streaming',
      Trailer: ['Lambda-Runtime-Function-Error-Type', 'Lambda-Runtime-Function-Error-Body'],
      'Content-Type': 'application/octet-stream',
    };
    const path = `${API}/invocation/${encodeURIComponent(id)}/response`;
    return this._request('POST', path, headers, onResponse);
  }

  _request(method, path, headers, onResponse) {
    const options = { hostname: this.hostname, port: this.port, method, path, headers };
    return http.request({ ...options, agent: this.agent }, onResponse);
  }

  /** POST a JSON body; `callback` runs once the answer was read (or the request failed). */
  _post(path, body, headers, callback) {
    let called = false;
    const done = () => {
      if (!called) {
        called = true;
        callback();
      }
    };
    const data = Buffer.from(body, 'utf8');
    const all = { 'Content-Type': 'application/json', 'Content-Length': data.length, ...headers };
    const request = this._request('POST', path, all, (response) => {
      response.on('data', () => {});
      response.on('end', done);
      response.on('error', done);
    });
    request.on('error', done);
    request.end(data);
  }
}
