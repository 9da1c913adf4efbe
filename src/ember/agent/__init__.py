"""The in-sandbox agent: Ember's equivalent of Lambda's RAPID init process.

One agent runs inside each execution environment, as its first process. Over one framed
channel to the host (``protocol.py``) it receives START, INVOKE and SHUTDOWN frames;
towards the function it serves the Lambda Runtime API 2018-06-01, the Extensions API
2020-01-01 and the Telemetry/Logs APIs on one loopback TCP port, starts the external
extensions and then the runtime process, relays each invoke to the runtime's ``/next``
long poll (and to the extensions' ``/event/next``) and each ``/response`` or ``/error``
back to the host, captures the runtime's and extensions' output as LOG frames, delivers
telemetry to subscribers, and reports the runtime's exit.

Modules (each small, stdlib only):

``launch``       the command line the host uses to start an agent (host side, import-light)
``main``         wiring: channel, listener, runtime process, shutdown
``http_server``  a minimal asyncio HTTP/1.1 server (keep-alive, chunked bodies, trailers)
``runtime_api``  the Runtime API routes and the runtime state machine of RAPID
``rendering``    RAPID's exact bodies, ``/next`` headers and error-type rules
``runtime``      the runtime process, its exit, its memory peak and its output capture
``lifecycle``    init → invoke → shutdown sequencing with extensions and telemetry; routing
``extensions_api``  the Extensions API routes and the extensions' state machine
``extension_procs`` external extensions: discovery in /opt/extensions, environment, start
``telemetry_api``   the Telemetry API / Logs API subscribe routes and their validation
``telemetry``    telemetry events, per-subscriber buffers, delivery by HTTP POST
``protocol``     the frames exchanged with the host

Invariants the host can rely on:

* The agent imports nothing outside ``ember.agent`` and the standard library, and is
  started with ``-I -S``.
* Every byte the runtime wrote before posting a response, an error or an init error, or
  before making its first ``/next`` call, reaches the host as LOG before the frame that
  reports that event; all output precedes EXIT.
* The agent never outlives the channel and never leaves the runtime behind: on channel
  EOF, an invalid frame or a termination signal it SIGKILLs the runtime's process group.
"""
