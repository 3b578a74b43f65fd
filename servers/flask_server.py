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
from werkzeug.serving import WSGIRequestHandler, make_server

from servers import idempotency
from servers.contract import (
    STREAM_HEADER,
    ApiError,
    check_token,
    framework_error,
    health,
    other_stream,
    parse_message,
    parse_poll_params,
    triggered,
)
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

NAME = "flask_server"


def create_app(config: ServerConfig | None = None) -> Flask:
    """Build the Flask app; `app.extensions["polling_lab"]` holds its log and counters."""
    config = config or ServerConfig()
    app = Flask(__name__)
    log = open_log(config.store_choice, config.retention)
    stats = Stats(NAME, log, config.max_waiting,
                  {"threaded": config.threaded, "check_interval": config.check_interval})
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
    app = create_app(config)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # no access log: it costs time
    sock = bind_socket(config.host, config.port)
    state = app.extensions["polling_lab"]

    class CountingHandler(WSGIRequestHandler):
        """werkzeug's handler, of which there is one per TCP connection: count them for /stats.

        werkzeug answers every request with `Connection: close`, so that is one per request.
        """

        def setup(self) -> None:
            state["stats"].count_connection()
            super().setup()

    # threaded= is the lesson: werkzeug's make_server defaults to False (one request at a time),
    # while Flask's app.run has defaulted to True since Flask 1.0. We always say which we want.
    server = make_server(
        config.host, 0, app, threaded=config.threaded, request_handler=CountingHandler,
        fd=sock.fileno(),
    )
    sock.close()  # the server holds its own duplicate of the listening socket
    announce(NAME, server.socket, config)

    def graceful_stop() -> None:
        # Held polls notice `closing` at their next check and answer 204; give them up to
        # two check intervals (at most 2 s), then stop serving.
        state["closing"].set()
        deadline = time.monotonic() + min(2.0, 2 * config.check_interval + 0.2)
        while state["stats"].waiting and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.05)  # let the last 204s leave their threads' sockets
        server.shutdown()

    def on_sigterm(signum: int, frame: object) -> None:
        threading.Thread(target=graceful_stop, daemon=True).start()

    signal.signal(signal.SIGTERM, on_sigterm)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()


if __name__ == "__main__":
    main()
