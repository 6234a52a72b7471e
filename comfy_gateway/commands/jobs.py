"""`comfy-gateway run | result | cancel`: the gateway from a terminal, through the typed client.

Exit codes: 0 the job completed (or was queued with --async, or cancelled on request);
1 it failed, was cancelled or timed out (or was already over when cancelled); 2 a wrong
command line or input file; 3 the gateway refused the request or could not be reached;
4 `result` without --wait: the job has not ended yet; 130 interrupted (the job keeps running).
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any, Iterator

from rich.console import Console
from rich.markup import escape

from ..client import Client, Conflict, GatewayError, JobResult, StreamEvent
from .display import JobDisplay, describe_failure
from .inputs import UsageError, load_workflow, parse_sets

OK, JOB_FAILED, USAGE, GATEWAY, NOT_DONE, INTERRUPTED = 0, 1, 2, 3, 4, 130


class Context:
    def __init__(self, args: argparse.Namespace, err: Console):
        self.args = args
        self.err = err  # progress and messages; stdout only gets what scripts read (ids, paths, JSON)
        self.client = Client(args.url, api_key=args.api_key)


def print_gateway_error(err: Console, exc: GatewayError) -> None:
    """The gateway's own words, and where in the request a 422 points."""
    where = f" (HTTP {exc.status_code})" if exc.status_code else ""
    err.print(f"[red]error[/]{where}: {escape(exc.detail)}")
    errors = exc.body.get("errors") if isinstance(exc.body, dict) else None
    for e in errors or []:
        loc = ".".join(str(p) for p in e.get("loc", []) if p != "body")
        err.print(f"  - {escape(loc)}: {escape(str(e.get('msg', '')))}")


def _follow(ctx: Context, events: Iterator[StreamEvent], on_id=None) -> JobResult | None:
    final = None
    with JobDisplay(ctx.err) as display:
        for ev in events:
            if on_id is not None:
                on_id(ev.request_id)
            display.event(ev)
            if ev.result is not None:
                final = ev.result
    return final


def _finish(ctx: Context, result: JobResult) -> int:
    """Download a completed job's outputs and say where they went; explain anything else."""
    if not result.ok:
        for line in describe_failure(result):
            ctx.err.print(f"[red]{escape(line)}[/]" if line.startswith("job ") else escape(line))
        if ctx.args.json:
            print(result.model_dump_json(indent=2))
        return JOB_FAILED
    out_dir = Path(ctx.args.out) if ctx.args.out else Path("comfy-outputs") / result.id
    saved = ctx.client.download_all(result, out_dir)
    took = f" in {result.durations.total:.2f} s" if result.durations.total is not None else ""
    ctx.err.print(f"[green]completed[/]{took}: {len(saved)} output(s) saved to {escape(str(out_dir))}")
    if ctx.args.json:
        print(result.model_dump_json(indent=2))
    else:
        for path in saved:
            print(path.resolve())
    return OK


def run(ctx: Context) -> int:
    args = ctx.args
    fields: dict[str, Any] = load_workflow(args.workflow) if args.workflow else {}
    if args.modifier:
        fields["modifier"] = args.modifier
        fields["modifications"] = parse_sets(args.set or [])
    if args.include_previews:
        fields["include_previews"] = True
    if args.timeout is not None:
        fields["timeout"] = args.timeout
    if args.priority is not None:
        fields["priority"] = args.priority
    workflow = fields.pop("workflow_json", None)
    if args.async_:
        job = ctx.client.submit(workflow, **fields)
        ctx.err.print(f"queued job {job.id}; fetch it with: comfy-gateway result {job.id} --wait")
        print(job.id)
        return OK
    seen: list[str] = []
    try:
        result = _follow(ctx, ctx.client.stream(workflow, **fields),
                         on_id=lambda i: seen.append(i) if not seen else None)
    except KeyboardInterrupt:
        if seen:
            ctx.err.print(f"\ninterrupted; job {seen[0]} keeps running on the gateway. Follow it with "
                          f"'comfy-gateway result {seen[0]} --wait', stop it with 'comfy-gateway cancel {seen[0]}'.")
        return INTERRUPTED
    if result is None:  # the stream broke off (gateway restarted): ask for the job as it stands
        if not seen:
            ctx.err.print("[red]error[/]: the gateway closed the stream before any event")
            return GATEWAY
        result = ctx.client.result(seen[0])
        if not result.done:
            ctx.err.print(f"the stream ended early; job {result.id} is {result.status}: "
                          f"'comfy-gateway result {result.id} --wait' follows it")
            return NOT_DONE
    return _finish(ctx, result)


def result(ctx: Context) -> int:
    args = ctx.args
    job = ctx.client.result(args.id)
    if not job.done:
        if not args.wait:
            ctx.err.print(f"job {job.id} is {job.status}: {escape(job.message)} (add --wait to follow it)")
            return NOT_DONE
        try:
            job = _follow(ctx, ctx.client.follow(args.id)) or ctx.client.result(args.id)
        except KeyboardInterrupt:
            return INTERRUPTED
        if not job.done:
            ctx.err.print(f"the stream ended early; job {job.id} is {job.status}")
            return NOT_DONE
    return _finish(ctx, job)


def cancel(ctx: Context) -> int:
    try:
        job = ctx.client.cancel(ctx.args.id)
    except Conflict as exc:
        ctx.err.print(f"job {ctx.args.id} had already ended: {exc.job_status or exc.detail}")
        return JOB_FAILED
    ctx.err.print(f"cancelled job {job.id}")
    return OK


def dispatch(args: argparse.Namespace) -> int:
    """Run a client command; every expected failure becomes a message and an exit code."""
    # soft_wrap: a line in a log file is never cut at 80 columns; a terminal wraps it itself.
    err = Console(stderr=True, highlight=False, soft_wrap=True)
    try:
        ctx = Context(args, err)
        return {"run": run, "result": result, "cancel": cancel}[args.command](ctx)
    except (UsageError, ValueError) as exc:  # ValueError: a --url that is no http(s) URL
        err.print(f"comfy-gateway {args.command}: {escape(str(exc))}")
        return USAGE
    except GatewayError as exc:
        print_gateway_error(err, exc)
        return GATEWAY


def add_parsers(sub: Any) -> None:
    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument("--url", help="the gateway (default: $COMFY_GATEWAY_URL, else http://127.0.0.1:8000)")
        p.add_argument("--api-key", help="one of the gateway's API_KEYS (default: $COMFY_GATEWAY_API_KEY)")

    def outputs(p: argparse.ArgumentParser) -> None:
        p.add_argument("--out", metavar="DIR", help="where to save the outputs (default: ./comfy-outputs/<job id>)")
        p.add_argument("--json", action="store_true", help="print the result object as JSON instead of the paths")

    p = sub.add_parser("run", help="run a workflow (or a modifier) and download its outputs",
                       description="Run a workflow through the gateway's stream: queue position while it "
                                   "waits, a progress bar per node while it runs, then the outputs saved.")
    p.add_argument("workflow", nargs="?", metavar="WORKFLOW.json",
                   help="an API-format workflow file ('-' for standard input)")
    p.add_argument("--modifier", metavar="NAME", help="run a modifier of the gateway instead of a workflow file")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="a modification for --modifier; the value is read as JSON when it parses, else as text")
    p.add_argument("--async", dest="async_", action="store_true", help="only queue it and print the job id")
    p.add_argument("--timeout", type=float, metavar="S", help="the job's time limit in seconds, queue included")
    p.add_argument("--include-previews", action="store_true", help="also fetch PreviewImage outputs")
    p.add_argument("--priority", type=int, metavar="N",
                   help="taken before lower priorities in every queue (up to the key's max_priority)")
    outputs(p)
    common(p)

    p = sub.add_parser("result", help="show a job; download its outputs once it completed")
    p.add_argument("id", help="the job id")
    p.add_argument("--wait", action="store_true", help="follow the job until it ends")
    outputs(p)
    common(p)

    p = sub.add_parser("cancel", help="cancel a job")
    p.add_argument("id", help="the job id")
    common(p)


def check_run_args(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    if args.command != "run":
        return
    if bool(args.workflow) == bool(args.modifier):
        parser.error("run: give a WORKFLOW.json file or --modifier NAME (exactly one)")
    if args.set and not args.modifier:
        parser.error("run: --set goes with --modifier")
