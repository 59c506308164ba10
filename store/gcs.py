"""A results store in Google Cloud Storage: gs://bucket[/prefix].

Credentials come from the standard Google environment (GOOGLE_APPLICATION_CREDENTIALS, Workload
Identity, gcloud), never from a manifest. STORAGE_EMULATOR_HOST points the client at an emulator
(fake-gcs-server in the tests). Create-only writes are single-request uploads with
if_generation_match=0; transient errors (429, 5xx, connection refused or reset, timeouts) are retried
with exponential backoff by the client's own retry policy until the store deadline
(hpt.store.base.store_deadline_s, $HPT_STORE_DEADLINE_S), then raise StoreUnavailable; permanent ones
are not retried.
"""
from __future__ import annotations

import base64
import hashlib
import os

import requests
from google.api_core import exceptions as gexc
from google.auth import exceptions as auth_exc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from hpt.store.base import STORE_DEADLINE_ENV, AlreadyExists, StoreUnavailable, TreeTransfer, store_deadline_s
from hpt.store.location import store_uri
from hpt.schemas.errors import UserError

# What an unreachable store looks like once the client stops retrying (or for a call it never retries).
_UNREACHABLE = (gexc.RetryError, gexc.ServerError, gexc.TooManyRequests, requests.exceptions.RequestException,
                auth_exc.TransportError, ConnectionError)


def _client() -> storage.Client:
    if os.environ.get("STORAGE_EMULATOR_HOST"):
        from google.auth.credentials import AnonymousCredentials

        return storage.Client(project=os.environ.get("GOOGLE_CLOUD_PROJECT", "hpt-test"), credentials=AnonymousCredentials())
    try:
        return storage.Client()
    except Exception as err:  # google.auth.exceptions.DefaultCredentialsError and friends
        raise UserError(f"no Google Cloud credentials: {err}", where="gs://",
                        hint="set GOOGLE_APPLICATION_CREDENTIALS or run `gcloud auth application-default login`") from None


class GCSStore(TreeTransfer):
    def __init__(self, uri: str):
        rest = uri[len("gs://"):]
        bucket, _, prefix = rest.partition("/")
        if not bucket:
            raise UserError("gs:// URI without a bucket", where=uri)
        self.uri = store_uri(uri)
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.bucket = _client().bucket(bucket)
        self.deadline_s = store_deadline_s()
        # Retry transient failures until the deadline, from 0.5 s doubling to at most 16 s apart (so a
        # store that comes back is noticed within 16 s).
        self.retry = DEFAULT_RETRY.with_deadline(self.deadline_s).with_delay(
            initial=0.5, maximum=min(16.0, max(1.0, self.deadline_s / 4)), multiplier=2.0)

    def _blob(self, key: str) -> storage.Blob:
        return self.bucket.blob(self.prefix + key)

    def _call(self, what: str, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except gexc.NotFound as err:
            if "bucket" in str(err).lower() and "object" not in str(err).lower():
                raise UserError("bucket does not exist", where=self.uri) from None
            raise KeyError(what) from None
        except gexc.Forbidden as err:
            raise UserError(f"permission denied: {err.message}", where=self.uri) from None
        except gexc.Unauthorized as err:
            raise UserError(f"not authorized: {err.message}", where=self.uri) from None
        except _UNREACHABLE as err:
            cause = getattr(err, "cause", None) or err  # RetryError: the last error it retried
            last = (str(cause).splitlines() or [""])[0][:200]
            raise StoreUnavailable(f"unreachable: no answer within {self.deadline_s:g} s ({type(cause).__name__}: {last})",
                                   where=self.uri,
                                   hint=f"check the network and the store; ${STORE_DEADLINE_ENV} sets how long hpt waits") from None

    def put_once(self, key: str, data: bytes) -> None:
        # A simple (single-request) upload: the emulator honours preconditions only there, and a
        # single request can never leave a partial object behind.
        try:
            self._call(key, self._blob(key).upload_from_string, data, if_generation_match=0, retry=self.retry, timeout=60)
        except gexc.PreconditionFailed:
            raise AlreadyExists(key) from None

    def put(self, key: str, data: bytes) -> None:
        self._call(key, self._blob(key).upload_from_string, data, retry=self.retry, timeout=120)

    def get(self, key: str) -> bytes:
        return self._call(key, self._blob(key).download_as_bytes, retry=self.retry, timeout=120)

    def get_versioned(self, key: str) -> tuple[bytes, str]:
        blob = self._blob(key)
        data = self._call(key, blob.download_as_bytes, retry=self.retry, timeout=120)
        return data, str(blob.generation or "")  # the download's x-goog-generation: these bytes' generation

    def exists(self, key: str) -> bool:
        return bool(self._call(key, self._blob(key).exists, retry=self.retry, timeout=60))

    def delete(self, key: str) -> None:
        try:
            self._call(key, self._blob(key).delete, retry=self.retry, timeout=60)
        except KeyError:
            pass

    def list(self, prefix: str = "") -> list[str]:
        def names():
            blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix, retry=self.retry, timeout=60)
            return sorted(b.name[len(self.prefix):] for b in blobs)

        return self._call(prefix, names)

    def list_versions(self, prefix: str) -> dict[str, str]:
        def names():
            blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix, retry=self.retry, timeout=60,
                                                  fields="items(name,generation),nextPageToken")
            return {b.name[len(self.prefix):]: str(b.generation or "") for b in blobs}

        return self._call(prefix, names)

    def checksums(self, prefix: str = "") -> dict[str, str]:
        """The listing's md5Hash of each object, nothing downloaded; a composite object (compose, parallel
        composite uploads) has only a crc32c, so its bytes are read and hashed. Not the generation: it
        changes when the same bytes are uploaded again, and an identical re-import must keep its digests."""
        def listed():
            blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix, retry=self.retry, timeout=60)
            return sorted((b.name[len(self.prefix):], b.md5_hash) for b in blobs)

        out = {}
        for key, md5 in self._call(prefix, listed):
            out[key] = base64.b64decode(md5).hex() if md5 else hashlib.md5(self.get(key)).hexdigest()
        return out

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}"
