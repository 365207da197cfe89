"""Download Omniglot's official archives, with SHA-256 checks and a progress bar.

The archives come from the data set's own repository
(github.com/brendenlake/omniglot, folder ``python/``). SHA-256 sums are known
for the two minimal background splits (the copies in ``shared/data/omniglot``)
and checked; for ``images_background.zip`` and ``images_evaluation.zip`` no
sum is recorded here, so those are only checked to be readable zip archives
and their computed SHA-256 is printed, to be compared or recorded by hand.

Without network, ``download`` fails with one line telling where to put the
files by hand. A download goes to a temporary file renamed into place only
after its checks, so a broken download never leaves a half file behind.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

from metarl.supervised.images import DataError

BASE_URL = "https://github.com/brendenlake/omniglot/raw/master/python/"
# name -> SHA-256 of name.zip; None where no sum is known (checked as a zip only).
ARCHIVES: dict[str, str | None] = {
    "images_background": None,
    "images_evaluation": None,
    "images_background_small1":
        "f38eb80f801274ac2b4dff5b24289016bfaba4a7d5bb50deebf27104ad6cb8a4",
    "images_background_small2":
        "3ccaa407515a8778e5d0861875af38b17e418f301ad5bb3b5a6b65d901a41c7f",
}
CHUNK = 1 << 20


class DownloadError(DataError):
    """A download failed or its content is not what was expected."""


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(url: str, target: Path, sha256: str | None, progress: bool = True,
          timeout: float = 30.0) -> str:
    """Download ``url`` to ``target`` and check it; returns its SHA-256."""
    from tqdm import tqdm

    try:
        response = urllib.request.urlopen(url, timeout=timeout)
    except (urllib.error.URLError, OSError, ValueError) as err:
        reason = getattr(err, "reason", err)
        raise DownloadError(f"cannot download {url} ({reason}); without network, fetch it "
                            f"elsewhere and put it at {target}") from None
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=target.name + ".", suffix=".part", dir=target.parent)
    digest = hashlib.sha256()
    try:
        total = int(response.headers.get("Content-Length") or 0) or None
        with os.fdopen(fd, "wb") as out, response, tqdm(
                total=total, unit="B", unit_scale=True, desc=target.name,
                disable=not progress) as bar:
            for block in iter(lambda: response.read(CHUNK), b""):
                out.write(block)
                digest.update(block)
                bar.update(len(block))
        got = digest.hexdigest()
        if sha256 is not None and got != sha256:
            raise DownloadError(f"{url}: SHA-256 {got} is not the expected {sha256}; "
                                "the download was discarded")
        if not zipfile.is_zipfile(tmp):
            raise DownloadError(f"{url}: the download is not a zip archive; discarded")
        os.replace(tmp, target)
        return got
    except OSError as err:
        raise DownloadError(f"downloading {url} to {target} failed ({err})") from None
    finally:
        Path(tmp).unlink(missing_ok=True)


def download_omniglot(to: str | Path, names: list[str] | None = None,
                      base_url: str = BASE_URL, progress: bool = True,
                      report=print) -> list[Path]:
    """Put ``<name>.zip`` of each archive in ``to`` (all four by default).

    An archive already there is kept if its SHA-256 matches (or none is known);
    a mismatching one is an error, so that no file is silently replaced.
    """
    names = list(ARCHIVES) if names is None else names
    unknown = [n for n in names if n not in ARCHIVES]
    if unknown:
        raise DownloadError(f"unknown Omniglot archive {unknown[0]!r}; "
                            f"known: {', '.join(ARCHIVES)}")
    to = Path(to)
    paths = []
    for name in names:
        target, expected = to / f"{name}.zip", ARCHIVES[name]
        if target.exists():
            got = sha256_of(target)
            if expected is not None and got != expected:
                raise DownloadError(f"{target} exists but its SHA-256 {got} is not the expected "
                                    f"{expected}; remove it to download it again")
            report(f"{target}: present, SHA-256 {got}"
                   + (" (verified)" if expected else " (no known sum to verify)"))
        else:
            got = fetch(base_url + f"{name}.zip", target, expected, progress)
            report(f"{target}: downloaded, SHA-256 {got}"
                   + (" (verified)" if expected else " (no known sum to verify)"))
        paths.append(target)
    return paths
