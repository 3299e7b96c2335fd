"""Whether a remote store answers, found out in about a second instead of a storage
library's own patience (botocore retries a refused connection for 9-13 s, and waits 60 s
for a connection that never completes).

A remote tier (`--remote`) that cannot be reached is left out of the run, which then works
from the local tier alone; a remote that is the cache (`--cache URL`) fails the run at once.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

from curifactory_cli.errors import CacheError

if TYPE_CHECKING:
    from curifactory_cli.store.remote import FsspecStore

# Seconds for the probe to connect, then to read the answer; one attempt, no retries.
PROBE_TIMEOUT_S = 2.0
# A link that drops a request now and then is not unreachable: a second attempt at once.
PROBE_ATTEMPTS = 2
# Whatever the library does (other protocols retry on their own terms), the probe gives up
# after this long.
PROBE_DEADLINE_S = PROBE_ATTEMPTS * PROBE_TIMEOUT_S + 1.0


def _probe_filesystem(store: FsspecStore, timeout: float) -> Any:
    """A filesystem for one bounded request: for S3, a separate client with short timeouts
    and a single attempt (the store's own keeps its retries for real transfers)."""
    if store._protocol not in ("s3", "s3a"):
        return store.fs
    import fsspec

    options = dict(store._options)
    config = dict(options.get("config_kwargs") or {})
    config.update(connect_timeout=timeout, read_timeout=timeout, retries={"total_max_attempts": 1})
    options["config_kwargs"] = config
    options["skip_instance_cache"] = True
    return fsspec.filesystem(store._protocol, **options)


def probe(
    store: FsspecStore, timeout: float = PROBE_TIMEOUT_S, deadline: float = PROBE_DEADLINE_S
) -> None:
    """One cheap request to the store (a listing of its root). Raises CacheError naming the
    store and why when it does not answer; a missing folder or bucket is an answer."""
    store.calls += 1
    outcome: list[BaseException] = []

    def ask() -> None:
        for attempt in range(PROBE_ATTEMPTS):
            try:
                _probe_filesystem(store, timeout).ls(store.path_of(""), detail=False)
                return
            except FileNotFoundError:
                return
            except BaseException as exc:  # the library's own errors (botocore's, aiohttp's)
                if _server_error(exc):
                    return  # it answered: a busy or failing server is reached (and retried)
                if attempt + 1 == PROBE_ATTEMPTS:
                    outcome.append(exc)

    # A thread, so that no library can make the run wait longer than the deadline; left
    # behind (a daemon) if it hangs.
    asking = threading.Thread(target=ask, name="curi-remote-probe", daemon=True)
    asking.start()
    asking.join(deadline)
    if asking.is_alive():
        raise CacheError(
            f"cannot reach {store.url}: no answer within {deadline:.0f} s",
            hint="check the store URL and the network.",
        )
    if outcome:
        exc = outcome[0]
        raise CacheError(
            f"cannot reach {store.url}: {type(exc).__name__}: {exc}",
            hint="check the store URL, your credentials and the network.",
        )


def _server_error(exc: BaseException) -> bool:
    """Whether the error is the server's answer (an HTTP 5xx: SlowDown, InternalError), found
    where the library keeps the response (botocore's ClientError, as s3fs's cause)."""
    seen: BaseException | None = exc
    for _ in range(8):  # a chain of causes, bounded
        if seen is None:
            return False
        response = getattr(seen, "response", None)
        if isinstance(response, dict):
            status = (response.get("ResponseMetadata") or {}).get("HTTPStatusCode")
            if isinstance(status, int) and status >= 500:
                return True
        seen = seen.__cause__ or seen.__context__
    return False
