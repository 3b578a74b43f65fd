"""Short polling and the article's naive long poll, on Flask.

`/events` answers at once (short polling). `/poll_for_updates` holds the request the way the
long-polling article does: check, `time.sleep(check_interval)`, check again, until the hold runs
out. Each held request therefore occupies one server thread, and a new event is noticed only at
the next check.

    python -m servers.flask_server --port 0 [--single-threaded] [--check-interval 1.0]
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from typing import Any

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

from servers import idempotency
from servers.contract import (
    SERVED_BY_HEADER,
    STREAM_HEADER,
    ApiError,
    check_token,
    framework_error,
    health,
    other_stream,
    parse_message,
    parse_poll_params,
    served_by,
    triggered,
)
from servers.limits import AtLimit, Budget, plan_budget
from servers.startup import (
    ServerConfig,
    announce,
    bind_socket,
    die_with_parent,
    parse_config,
    start_generator,
)
from servers.stats import Stats
from servers.store import open_log
from servers.tls import server_context
from servers.werkzeug_guard import (
    GuardedHandler,
    GuardedSingleThreadedServer,
    GuardedThreadedServer,
    RequestDeadlines,
)

NAME = "flask_server"


def create_app(config: ServerConfig | None = None, *, budget: Budget | None = None,
               at_limit: AtLimit | None = None) -> Flask:
    """Build the Flask app; `app.extensions["polling_lab"]` holds its log and counters.

    `main` passes the open-file `budget` it planned, which may hold fewer polls than
    `config.max_waiting`, and the `at_limit` line to write when full.
    """
    config = config or ServerConfig()
    app = Flask(__name__)
    log = open_log(config.store_choice, config.retention)
    settings: dict[str, Any] = {"threaded": config.threaded,
                                "check_interval": config.check_interval}
    if budget is not None and config.threaded:
        settings["max_threads"] = budget.max_threads
    max_waiting = budget.max_waiting if budget is not None else config.max_waiting
    stats = Stats(NAME, log, max_waiting, settings, budget=budget, at_limit=at_limit)
    publishes = idempotency.RecentPublishes()
    closing = threading.Event()  # set on shutdown: held polls answer 204 at their next check
    app.extensions["polling_lab"] = {"log": log, "stats": stats, "config": config,
                                     "closing": closing}

    @app.errorhandler(ApiError)
    def api_error(exc: ApiError) -> tuple[Response, int, dict[str, str]]:
        return jsonify(exc.body()), exc.status, exc.headers

    @app.errorhandler(HTTPException)
    def http_error(exc: HTTPException) -> tuple[Response, int, dict[str, str]]:
        return api_error(framework_error(exc.code or 400, request.method, request.path,
                                         exc.description or "Bad request."))

    @app.after_request
    def add_stream_header(response: Response) -> Response:
        response.headers[STREAM_HEADER] = log.stream
        response.headers[SERVED_BY_HEADER] = served_by()  # which process answered
        return response

    @app.get("/health")
    def health_view() -> dict[str, Any]:
        """Readiness: the launcher polls this until the server answers."""
        return health(NAME, log.stream)

    @app.post("/trigger_event")
    def trigger_event() -> tuple[dict[str, Any], int, dict[str, str]]:
        """Publish one event (once per Idempotency-Key); each strategy's clients hear of it."""
        stats.count_request("trigger_event")
        check_token(config.token, request.headers.get("Authorization"))
        message = parse_message(request.get_data(), request.args)
        event, replayed = publishes.publish(request.headers.get(idempotency.HEADER), message,
                                            log.publish)
        if replayed:
            stats.count_replay()
            return triggered(event), 201, {idempotency.REPLAYED_HEADER: "true"}
        return triggered(event), 201, {}

    @app.get("/events")
    def events() -> Response:
        """Short poll: answer at once, with an empty list when nothing is new."""
        stats.count_request("events")
        params = parse_poll_params(request.args, config.hold)
        found = log.since(params.last_event_id, params.limit)
        if not found:
            stats.count_empty()
        return jsonify(found)

    @app.get("/poll_for_updates")
    def poll_for_updates() -> Response:
        """Naive long poll: a sleep loop holds this thread and notices events only between naps."""
        stats.count_request("poll_for_updates")
        params = parse_poll_params(request.args, config.hold)
        if other_stream(log.stream, request.headers.get(STREAM_HEADER)):
            stats.count_empty()
            return Response(status=204)  # its cursor is from before a restart: reset now
        deadline = time.monotonic() + params.timeout
        found = log.since(params.last_event_id, params.limit)
        if not found:
            stats.wait_started()
            try:
                while not found and not closing.is_set() and (
                    left := deadline - time.monotonic()
                ) > 0:
                    time.sleep(min(config.check_interval, left))
                    stats.count_check()
                    found = log.since(params.last_event_id, params.limit)
            finally:
                stats.wait_ended()
        if not found:
            stats.count_empty()
            return Response(status=204)
        return jsonify(found)

    @app.get("/stats")
    def stats_view() -> dict[str, Any]:
        """The counters a notebook plots: requests, empty answers, waiting polls, threads."""
        return stats.snapshot()

    start_generator(config, log.publish)
    return app


def main(argv: list[str] | None = None) -> None:
    die_with_parent()
    config = parse_config(NAME, argv, flask=True)
    # Two descriptors per connection: its socket, and the selector werkzeug opens as it ends.
    budget = plan_budget(config.max_waiting, fds_per_connection=2)
    at_limit = AtLimit(NAME)
    app = create_app(config, budget=budget, at_limit=at_limit)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log: it costs time
    sock = bind_socket(config.host, config.port)
    state = app.extensions["polling_lab"]
    # One werkzeug handler per TCP connection; it counts them for /stats. werkzeug answers
    # every request with `Connection: close`, so that is one per request.
    handler = GuardedHandler.for_server(state["stats"], RequestDeadlines(config.request_timeout))
    # Threading is the lesson: werkzeug's make_server defaults to one request at a time, while
    # Flask's app.run has defaulted to a thread per request since Flask 1.0. We say which.
    server: GuardedThreadedServer | GuardedSingleThreadedServer
    tls = server_context(*config.tls) if config.tls else None  # --tls: https (servers.tls)
    if config.threaded:
        why = "at the open-file limit: " if budget.capped else ""
        server = GuardedThreadedServer(sock, app, handler, at_limit, budget.max_threads, why,
                                       tls=tls)
    else:
        server = GuardedSingleThreadedServer(sock, app, handler, at_limit, tls=tls)
    sock.close()  # the server holds its own duplicate of the listening socket
    announce(NAME, server.socket, config)
    threads = f", {budget.max_threads} request threads" if config.threaded else ""
    print(budget.describe(NAME) + threads, flush=True)

    def graceful_stop() -> None:
        # Held polls notice `closing` at their next check and answer 204; give them up to
        # two check intervals (at most 2 s), then stop serving.
        state["closing"].set()
        if isinstance(server, GuardedThreadedServer):
            server.stopping = True
        deadline = time.monotonic() + min(2.0, 2 * config.check_interval + 0.2)
        while state["stats"].waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # let the last 204s leave their threads' sockets
        server.shutdown()

    def on_sigterm(signum: int, frame: object) -> None:
        threading.Thread(target=graceful_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        # socketserver notices shutdown() between selects: 0.5 s by default, paid by every stop
        server.serve_forever(poll_interval=0.05)
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
