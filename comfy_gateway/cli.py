"""`comfy-gateway serve`: run the service with the settings of the environment and `.env`."""

from __future__ import annotations

import argparse
import sys

from .settings import Settings


def serve(settings: Settings) -> int:
    import uvicorn

    if settings.api_workers > 1 and settings.api_cache == "memory":
        print("API_WORKERS > 1 needs a shared store; with API_CACHE=memory each process would "
              "keep its own jobs. Use API_CACHE=redis (see the README), or API_WORKERS=1.", file=sys.stderr)
        return 2
    uvicorn.run(
        "comfy_gateway.app:create_app", factory=True, host=settings.api_host, port=settings.api_port,
        workers=settings.api_workers, reload=settings.api_reload, log_level=settings.api_log_level.lower(),
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="comfy-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP service (configured by environment variables)")
    args = parser.parse_args(argv)
    if args.command == "serve":
        return serve(Settings())
    return 1


if __name__ == "__main__":
    sys.exit(main())
