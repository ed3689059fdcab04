"""Downloading a file safely: checksum verified, written atomically, never half-written."""

from __future__ import annotations

import gzip
import hashlib
import os
import tempfile
import urllib.request
from pathlib import Path


class DownloadError(RuntimeError):
    """A file could not be fetched or failed its checksum."""


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def content_sha256(path: str | Path) -> str:
    """SHA-256 of a file's content, gunzipped first when it ends in ``.gz``.

    Checksums are taken over the uncompressed bytes so that a re-compressed copy (Debian's
    package recompresses the upstream files) verifies as well as the original.
    """
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rb") as handle:
        return sha256_of(handle.read())


def download(url: str, destination: str | Path, content_checksum: str, timeout: float = 60.0) -> Path:
    """Fetch ``url`` to ``destination``, verify it, and only then move it into place.

    Args:
        url: where to fetch from (``http(s)://`` or ``file://``).
        destination: final path; its folder is created. An existing file is left untouched
            unless the new one verifies.
        content_checksum: expected SHA-256 of the (gunzipped, for ``.gz``) content.
        timeout: seconds to wait for the server.

    Returns:
        The destination path.

    Raises:
        DownloadError: the fetch failed or the checksum did not match; nothing is written.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            payload = response.read()
    except Exception as exc:  # urllib raises several types; all mean "not fetched"
        raise DownloadError(f"could not download {url}: {exc}") from exc
    content = gzip.decompress(payload) if destination.suffix == ".gz" else payload
    actual = sha256_of(content)
    if actual != content_checksum:
        raise DownloadError(
            f"{url} failed its checksum (sha256 {actual}, expected {content_checksum}); "
            "the file was not saved. The mirror may be corrupt: try again later or fetch it by hand."
        )
    fd, tmp_name = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, destination)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return destination
