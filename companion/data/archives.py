"""Fetching and unpacking dataset archives safely: streamed, MD5-checked, never half-written.

The real datasets (PASCAL VOC is 1.9 GB) publish MD5 sums of their archives. ``fetch_archive``
streams a download to a temporary file, checks the sum and only then moves it into place;
``extract_matching`` copies only the members a loader expects, to paths it builds itself, so a
malicious or damaged archive cannot write outside the data folder.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from companion.data.download import DownloadError


def md5_of(path: str | Path) -> str:
    """MD5 of a file, read in 1 MiB chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def fetch_archive(url: str, destination: Path, md5: str, timeout: float = 60.0) -> Path:
    """Stream ``url`` to ``destination``, verifying its MD5; nothing is left behind on failure.

    Unlike :func:`companion.data.download.download`, which holds the file in memory, this streams
    (VOC 2012 is 1.9 GB) and checks the MD5 that the datasets publish.

    Raises:
        DownloadError: the fetch failed or the checksum did not match.
    """
    destination = Path(destination)
    destination.parent.mkdir(parents=True, exist_ok=True)
    fd, partial = tempfile.mkstemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".part")
    try:
        digest = hashlib.md5(usedforsecurity=False)
        with os.fdopen(fd, "wb") as handle:
            try:
                request = urllib.request.Request(url, headers={"User-Agent": "dl-course-companion"})
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    for chunk in iter(lambda: response.read(1 << 20), b""):
                        digest.update(chunk)
                        handle.write(chunk)
            except Exception as exc:  # urllib raises several types; all mean "not fetched"
                raise DownloadError(f"could not download {url}: {exc}") from exc
        if digest.hexdigest() != md5:
            raise DownloadError(f"{url} failed its checksum (md5 {digest.hexdigest()}, expected {md5}); the "
                                "file was not saved. The server may have changed the file: fetch it by hand.")
        os.replace(partial, destination)
    except BaseException:
        Path(partial).unlink(missing_ok=True)
        raise
    return destination


def _members(archive: Path) -> Iterator[tuple[str, bool, Callable[[], IO[bytes]]]]:
    """``(name, is_regular_file, open)`` for each member of a tar or zip archive."""
    if archive.suffix == ".zip":
        with zipfile.ZipFile(archive) as zipped:
            for info in zipped.infolist():
                regular = not info.is_dir() and not stat.S_ISLNK(info.external_attr >> 16)
                yield info.filename, regular, lambda info=info: zipped.open(info)
    else:
        with tarfile.open(archive) as tar:
            for member in tar:
                yield member.name, member.isfile(), lambda member=member: tar.extractfile(member)


def extract_matching(archive: Path, pattern: re.Pattern[str], staging: Path, url: str) -> int:
    """Copy the members of ``archive`` whose names fully match ``pattern`` into ``staging``.

    Each file lands at ``staging / match.group(1)``: a path built from the pattern's checked
    group, never from the raw name, so ``..`` or absolute names cannot escape. A matching name that
    is not a regular file (a link, a device) makes the archive invalid.

    Returns:
        The number of files copied.
    """
    copied = 0
    for name, regular, open_member in _members(archive):
        match = pattern.fullmatch(name.removeprefix("./"))
        if match is None:
            continue  # files the loader does not use, and anything unexpected, are skipped
        if not regular:
            raise ValueError(f"{archive}: {name} is not a regular file; the archive is not the published one. "
                             f"Delete it and fetch it again from {url}.")
        target = staging / match.group(1)
        target.parent.mkdir(parents=True, exist_ok=True)
        with open_member() as source, open(target, "wb") as handle:
            shutil.copyfileobj(source, handle)
        copied += 1
    return copied


def merge_into(staging: Path, folder: Path, last: str) -> None:
    """Move every file under ``staging`` to the same relative path under ``folder``.

    Files whose parent folder is named ``last`` (the split lists) move after all the others, so a
    list only appears once the files it names are in place: a list marks a complete copy.
    """
    files = [path for path in staging.rglob("*") if path.is_file()]
    for source in sorted(files, key=lambda path: path.parent.name == last):  # stable: lists go last
        target = folder / source.relative_to(staging)
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, target)
