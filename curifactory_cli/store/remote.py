"""The cache at any fsspec URL: `s3://bucket/prefix`, `gs://...`, `memory://...`.

The layout is the local one (see `store.entry`), with one difference that makes concurrent
writers safe on an object store, which has no atomic rename of a folder: an entry's files
are uploaded under a fresh attempt folder, and `meta.json`, written last, names it:

    <prefix>/<experiment>/<params hash[:16]>/<stage>-<key[:16]>/
        meta.json                 # the commit record; "objects": "<attempt>"
        <attempt>/<output><ext>   # the files it lists, with their sizes and sha256

So no reader ever sees a partial entry (no `meta.json` yet), and two machines computing the
same entry at once never mix their files: the first `meta.json` wins (a conditional write,
`If-None-Match`, where the store supports it), and the loser deletes its own attempt. A
writer killed mid-upload leaves an attempt folder without a `meta.json`, which `curi cache gc`
removes. Downloads are verified against the checksums (and the signature, with
`CURI_CACHE_KEY`) before any cacher loads them.

Credentials and endpoints come from where the filesystem library looks for them (for S3: the
AWS environment variables and config files, `AWS_ENDPOINT_URL`) or from `storage_options` in
the project configuration; never from the cache itself.
"""

from __future__ import annotations

from curifactory_cli.store.remote_tidy import RemoteTidying


class FsspecStore(RemoteTidying):
    """A cache at an fsspec URL. With `dry=True` nothing is ever written to it. Made of its
    parts, one module each (inherited, so a lookup or a publish costs no extra call):
    `remote_folder` (the URL and its layout), `remote_read`, `remote_write`, `remote_tidy`."""
