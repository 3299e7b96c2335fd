"""The one way from a project's settings to its cache: every command, a run, a notebook's
session and a rebuilt report open the cache here, so `cache`, `remote` and
`storage_options` mean the same thing everywhere.

Two views of the same cache:

* `project_store(..., tiers=True)` is what a run reads and writes through: a local folder;
  a local folder in front of the `remote` cache; or, for a cache at a URL, that cache behind
  a temporary local tier (see `store.open_store`).
* `project_store(..., tiers=False)` is the cache itself, as the cache commands list, inspect
  and tidy it: a local folder, or the store at the URL (no local tier, no remote).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Literal, overload

from curifactory_cli.errors import ConfigError
from curifactory_cli.run.settings import Settings, resolve_cache

if TYPE_CHECKING:
    from curifactory_cli.store.base import Store
    from curifactory_cli.store.local import LocalStore
    from curifactory_cli.store.remote import FsspecStore


@overload
def project_store(
    root: Path,
    settings: Settings,
    *,
    cache: str | None = ...,
    dry: bool = ...,
    tiers: Literal[True] = ...,
) -> Store: ...
@overload
def project_store(
    root: Path,
    settings: Settings,
    *,
    cache: str | None = ...,
    dry: bool = ...,
    tiers: Literal[False],
) -> LocalStore | FsspecStore: ...
def project_store(
    root: Path,
    settings: Settings,
    *,
    cache: str | None = None,
    dry: bool = False,
    tiers: bool = True,
) -> Store | LocalStore | FsspecStore:
    """The project's cache (`cache`: another location instead of the settings' one, such
    as the cache a past run recorded). `dry`: reads only, never writes."""
    from curifactory_cli.store import LocalStore, is_url, local_path, open_store

    location = cache if cache is not None else resolve_cache(root, settings)
    options = settings.get("storage_options")
    if tiers:
        return open_store(location, settings.get("remote"), dry, options)
    if is_url(location):
        from curifactory_cli.store.remote import FsspecStore

        return FsspecStore(location, dry, options)
    return LocalStore(local_path(location), dry=dry)


def remote_store(settings: Settings) -> FsspecStore:
    """The project's `remote` cache itself (for `curi cache push` and `pull`)."""
    from curifactory_cli.store.remote import FsspecStore

    url = settings.get("remote")
    if not url:
        raise ConfigError(
            "no remote cache to push to or pull from",
            hint="give --remote s3://bucket/prefix (any fsspec URL), or set `remote` in "
            "curi.toml, [tool.curi] or CURI_REMOTE.",
        )
    return FsspecStore(str(url), storage_options=settings.get("storage_options"))
