"""Serving over TLS (`--tls CERTFILE KEYFILE`): load the certificate once, refuse a bad one early.

Both bundled servers take the same pair of files. The asyncio server hands them to uvicorn
(`ssl_certfile`, `ssl_keyfile`); the Flask server wraps werkzeug's listening socket with
`server_context`. For teaching only: `helpers.launch(kind, tls=True)` makes a throwaway CA and
a certificate for 127.0.0.1 with `trustme`; `python -m trustme -d DIR` makes the same by hand.
"""

from __future__ import annotations

import ssl


def server_context(certfile: str, keyfile: str) -> ssl.SSLContext:
    """A server-side TLS context for `certfile` (the chain, leaf first) and its `keyfile`.

    Raises ValueError, saying what to check, if either cannot be read or they do not match.
    """
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    try:
        context.load_cert_chain(certfile, keyfile)
    except FileNotFoundError as exc:
        raise ValueError(
            f"--tls: {exc.filename} does not exist. Give the certificate (PEM) first and its "
            "private key second; for a teaching certificate run python -m trustme -d DIR "
            "and pass DIR/server.pem DIR/server.key") from None
    except (OSError, ssl.SSLError) as exc:
        raise ValueError(
            f"--tls: cannot use {certfile} with the key {keyfile} ({exc}). Both must be PEM "
            "files, the certificate first and its own private key second") from None
    return context


def check_files(certfile: str, keyfile: str) -> None:
    """Load the pair once, at start, so a wrong path fails before the server announces a URL."""
    server_context(certfile, keyfile)
