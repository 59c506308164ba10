"""A results store in Google Cloud Storage: gs://bucket[/prefix].

Credentials come from the standard Google environment (GOOGLE_APPLICATION_CREDENTIALS, Workload
Identity, gcloud), never from a manifest. STORAGE_EMULATOR_HOST points the client at an emulator
(fake-gcs-server in the tests). Create-only writes are single-request uploads with
if_generation_match=0; transient errors (429, 5xx, connection resets) are retried with
exponential backoff by the client's own retry policy, permanent ones are not.
"""
from __future__ import annotations

import os

from google.api_core import exceptions as gexc
from google.cloud import storage
from google.cloud.storage.retry import DEFAULT_RETRY

from hpt.store.base import AlreadyExists, TreeTransfer
from hpt.schemas.errors import UserError

# Retry transient failures for up to two minutes, starting at 0.5 s and doubling.
RETRY = DEFAULT_RETRY.with_deadline(120.0).with_delay(initial=0.5, maximum=16.0, multiplier=2.0)


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
        self.uri = f"gs://{bucket}/{prefix.strip('/')}".rstrip("/")
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.bucket = _client().bucket(bucket)

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

    def put_once(self, key: str, data: bytes) -> None:
        # A simple (single-request) upload: the emulator honours preconditions only there, and a
        # single request can never leave a partial object behind.
        try:
            self._call(key, self._blob(key).upload_from_string, data, if_generation_match=0, retry=RETRY, timeout=60)
        except gexc.PreconditionFailed:
            raise AlreadyExists(key) from None

    def put(self, key: str, data: bytes) -> None:
        self._call(key, self._blob(key).upload_from_string, data, retry=RETRY, timeout=120)

    def get(self, key: str) -> bytes:
        return self._call(key, self._blob(key).download_as_bytes, retry=RETRY, timeout=120)

    def exists(self, key: str) -> bool:
        return bool(self._call(key, self._blob(key).exists, retry=RETRY, timeout=60))

    def delete(self, key: str) -> None:
        try:
            self._call(key, self._blob(key).delete, retry=RETRY, timeout=60)
        except KeyError:
            pass

    def list(self, prefix: str = "") -> list[str]:
        def names():
            blobs = self.bucket.client.list_blobs(self.bucket, prefix=self.prefix + prefix, retry=RETRY, timeout=60)
            return sorted(b.name[len(self.prefix):] for b in blobs)

        return self._call(prefix, names)

    def url(self, key: str) -> str:
        return f"{self.uri}/{key}"
