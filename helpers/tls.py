"""TLS for teaching: a throwaway CA for `launch(kind, tls=True)`, and how clients verify it.

    with launch("asyncio", tls=True) as server:          # server.url is https://127.0.0.1:PORT
        client = LongPollClient(server.url, verify=server.ca_file)

`throwaway_certificate()` asks `trustme` for a brand-new certificate authority, and a
certificate it signs for localhost, 127.0.0.1 and ::1, written as PEM files to a temporary
folder. Nothing is installed in the system's trust store: only a client told `verify=ca_file`
trusts that server, and every other client refuses it, as it should. Every kit client takes
`verify`: True (the system's CAs, for a real server) or the path of a CA file. `verify=False`
is refused, because a lesson that switched verification off would teach the one thing not to do.
"""

from __future__ import annotations

import ssl
import tempfile
from dataclasses import dataclass
from pathlib import Path

from helpers.errors import UntrustedCertificate

#: What a client trusts: True for the system's certificate authorities, or a CA file's path.
Verify = bool | str | Path


@dataclass(frozen=True)
class Certificate:
    """A throwaway CA and the server certificate it signed, as PEM files in `directory`."""

    directory: Path
    ca_file: Path  # what a client trusts (`verify=`)
    cert_file: Path  # the server's certificate chain, leaf first
    key_file: Path  # the server's private key

    def server_flags(self) -> list[str]:
        """The bundled servers' command-line flags to serve https with this certificate."""
        return ["--tls", str(self.cert_file), str(self.key_file)]


def throwaway_certificate(directory: Path | None = None) -> Certificate:
    """Make a new CA and a certificate for localhost, 127.0.0.1 and ::1 (valid for a year).

    Written to `directory` (a new temporary folder if None). For teaching only: the CA's key
    is thrown away with the folder, so nothing else can ever be signed by it.
    """
    import trustme  # a test and learner dependency only: imported when a lesson asks for TLS

    folder = directory or Path(tempfile.mkdtemp(prefix="polling-lab-tls-"))
    folder.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="Polling Lab throwaway CA")
    leaf = ca.issue_cert("localhost", "127.0.0.1", "::1")
    made = Certificate(folder, folder / "ca.pem", folder / "server.pem", folder / "server.key")
    ca.cert_pem.write_to_path(str(made.ca_file))
    leaf.private_key_pem.write_to_path(str(made.key_file))
    with open(made.cert_file, "wb") as chain:
        for blob in leaf.cert_chain_pems:
            chain.write(blob.bytes())
    return made


def requests_verify(verify: Verify) -> bool | str:
    """`verify` as `requests` takes it: True, or a CA file's path. Refuses False."""
    refuse_no_verification(verify)
    return True if verify is True else str(verify)


def client_context(verify: Verify) -> ssl.SSLContext:
    """A client-side TLS context that checks the server's certificate and name against `verify`."""
    refuse_no_verification(verify)
    if verify is True:
        return ssl.create_default_context()
    return ssl.create_default_context(cafile=str(verify))


def refuse_no_verification(verify: Verify) -> None:
    """Raise ValueError for `verify=False`, saying what to pass instead."""
    if verify is False:
        raise ValueError(
            "verify=False would accept any certificate, so anyone on the path could read and "
            "change the events; the kit never does it. For a server that launch(..., tls=True) "
            "started, pass verify=server.ca_file")


def certificate_refused(exc: BaseException) -> bool:
    """True if `exc`, or anything it wraps, is a failed certificate check (not a lost network)."""
    seen: set[int] = set()
    todo: list[object] = [exc]
    while todo:
        item = todo.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if isinstance(item, ssl.SSLCertVerificationError):
            return True
        todo += [item.__cause__, item.__context__, *item.args, getattr(item, "reason", None)]
    return False


def untrusted(url: str, exc: BaseException) -> UntrustedCertificate:
    """The kit's error for a server at `url` whose certificate this client does not trust."""
    return UntrustedCertificate(
        f"The server at {url} presented a certificate this client does not trust ({exc}). For "
        "a server that launch(..., tls=True) started, pass verify=server.ca_file to the client "
        "(LongPollClient, SSEClient, WebSocketClient, ...); for a shared server, pass the "
        "CA file you were given: connect(url, verify=PATH); for a real server, check its "
        "address and that a CA your system trusts signed its certificate. Never turn "
        "verification off.")
