"""`comfy-gateway serve` runs the service (settings from the environment and `.env`);
`run`, `result` and `cancel` use a running gateway from the command line."""

from __future__ import annotations

import argparse
import sys

from pydantic import ValidationError

from .settings import Settings


def serve(settings: Settings) -> int:
    import uvicorn

    from .logs import setup_logging

    setup_logging(settings.log_format, settings.api_log_level)  # also for uvicorn's supervisor

    if settings.api_workers > 1 and settings.api_cache == "memory":
        print("API_WORKERS > 1 needs a shared store; with API_CACHE=memory each process would "
              "keep its own jobs. Use API_CACHE=redis (see the README), or API_WORKERS=1.", file=sys.stderr)
        return 2
    # log_config=None: uvicorn installs no handlers of its own; create_app's setup_logging
    # sends its lines (startup, access log) through the gateway's one format (LOG_FORMAT).
    # timeout_keep_alive 75 s: longer than the idle time of common client pools (aiohttp keeps
    # connections 15 s), so a client never posts into a connection we just closed.
    common = dict(host=settings.api_host, port=settings.api_port, log_level=settings.api_log_level.lower(),
                  log_config=None, timeout_keep_alive=75)
    if settings.api_workers > 1 or settings.api_reload:
        # uvicorn supervises the processes; each drains in its lifespan shutdown instead.
        uvicorn.run("comfy_gateway.app:create_app", factory=True, workers=settings.api_workers,
                    reload=settings.api_reload, **common)
        return 0
    from .app import create_app
    from .server import DrainingServer

    app = create_app(settings)
    config = uvicorn.Config(app, timeout_graceful_shutdown=5, **common)
    DrainingServer(config, app.state.runtime, settings.shutdown_grace).run()
    return 0


def main(argv: list[str] | None = None) -> int:
    from .commands import jobs

    parser = argparse.ArgumentParser(prog="comfy-gateway", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("serve", help="run the HTTP service (configured by environment variables)")
    jobs.add_parsers(sub)
    args = parser.parse_args(argv)
    jobs.check_run_args(parser, args)
    if args.command != "serve":
        return jobs.dispatch(args)
    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = "_".join(str(p) for p in err["loc"]).upper() or "settings"
            print(f"invalid configuration: {name}: {err['msg']}", file=sys.stderr)
        return 2
    return serve(settings)


if __name__ == "__main__":
    sys.exit(main())
