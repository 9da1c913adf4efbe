"""Ember's Python runtime client: the observable behaviour of awslambdaric 4.x, stdlib only.

Started through ``../bootstrap.py``. Imports nothing from Ember (this directory's parent is
put on ``sys.path`` after the standard library, so the package imports as ``ember_ric``)
and does no work at import time.

Modules: ``bootstrap`` (handler loading, invoke loop; its name matters, see below),
``client`` (Runtime API over one keep-alive connection), ``context``, ``logs``,
``marshal``, ``errors``. Stack traces drop the leading frames of any ``/bootstrap.py``,
exactly as awslambdaric does, so handler errors show user frames only.

Reproduced from awslambdaric (``bootstrap.py``, ``lambda_context.py``,
``lambda_runtime_marshaller.py``, ``lambda_runtime_log_utils.py``):

* Handler resolution and its errors are reported **eagerly**, like awslambdaric 4.x:
  ``POST /runtime/init/error`` with ``Lambda-Runtime-Function-Error-Type`` and the body
  ``{"errorMessage","errorType","requestId":"","stackTrace"}``, then ``exit(1)``.
* Events are JSON-decoded only when the ``/next`` Content-Type is ``application/json``;
  ``bytes`` results are posted as ``application/unknown``, anything else as JSON with
  simplejson's rules (``Decimal`` as a JSON number, ``bytes`` as UTF-8 text, ``_asdict()``
  objects as objects; ``ensure_ascii`` off only for ``AWS_Lambda_python3.12+``).
* Handler exceptions: ``POST …/error`` (no error-type header, X-Ray cause header) with the
  same body and stack strings, and the ``[ERROR] Type: msg\\rTraceback…`` line on stdout.
* Logging: the root logger's text format (UTC) or JSON with ``AWS_LAMBDA_LOG_FORMAT=JSON``;
  records are written to stdout as they are (awslambdaric converts nothing on stdout).

Not reproduced: the telemetry log fd, SnapStart hooks, multi-concurrency mode, and
namedtuples inside a result (encoded as arrays, as the stdlib does; simplejson makes
objects of them).
"""
