"""``ember`` command-line entry point: argument parsing and dispatch only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ember", description="A self-hosted AWS Lambda.")
    commands = parser.add_subparsers(dest="command", required=True)

    serve = commands.add_parser("serve", help="run the Ember server")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=9000)
    serve.add_argument("--data-dir", default="./.ember")
    serve.add_argument("--no-auth", action="store_true", help="accept unsigned requests")
    serve.add_argument(
        "--sandbox", default=None, help="sandbox backend: namespace (default) or process"
    )

    logs = commands.add_parser("logs", help="print a function's log events")
    logs.add_argument("function")
    logs.add_argument("--endpoint", default="http://127.0.0.1:9000")
    logs.add_argument("--data-dir", default="./.ember", help="where to find the credentials")
    logs.add_argument("--follow", "-f", action="store_true", help="keep printing new events")
    logs.add_argument("--stream", default=None, help="only this log stream")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "serve":
        from ember.cli.serve import serve  # noqa: PLC0415 - the client commands stay light

        return serve(args)
    from ember.cli.logs import print_logs  # noqa: PLC0415 - see above

    return print_logs(args)


if __name__ == "__main__":
    sys.exit(main())
