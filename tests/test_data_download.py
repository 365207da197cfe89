"""`metarl data omniglot`: checksums on local file:// URLs and the offline error (no network)."""

import hashlib
import urllib.error
import urllib.request
import zipfile

import pytest

from metarl.cli import main
from metarl.supervised import download
from metarl.supervised.download import DownloadError, download_omniglot


@pytest.fixture
def mirror(tmp_path, monkeypatch):
    """A local folder served as file:// holding a small zip named like an official archive."""
    folder = tmp_path / "mirror"
    folder.mkdir()
    with zipfile.ZipFile(folder / "images_background_small1.zip", "w") as archive:
        archive.writestr("images_background_small1/Greek/character01/0001_01.png", b"x")
    digest = hashlib.sha256((folder / "images_background_small1.zip").read_bytes()).hexdigest()
    monkeypatch.setitem(download.ARCHIVES, "images_background_small1", digest)
    return folder.as_uri() + "/", digest


def test_download_checks_the_sha256(tmp_path, mirror):
    url, digest = mirror
    lines = []
    paths = download_omniglot(tmp_path / "data", ["images_background_small1"], base_url=url,
                              progress=False, report=lines.append)
    assert paths == [tmp_path / "data" / "images_background_small1.zip"]
    assert hashlib.sha256(paths[0].read_bytes()).hexdigest() == digest
    assert lines == [f"{paths[0]}: downloaded, SHA-256 {digest} (verified)"]
    # Present and verified: kept, not downloaded again.
    download_omniglot(tmp_path / "data", ["images_background_small1"], base_url="file:///nowhere/",
                      progress=False, report=lines.append)
    assert lines[-1].endswith("present, SHA-256 " + digest + " (verified)")


def test_wrong_sha256_is_discarded(tmp_path, mirror, monkeypatch):
    url, _ = mirror
    monkeypatch.setitem(download.ARCHIVES, "images_background_small1", "0" * 64)
    with pytest.raises(DownloadError, match="SHA-256 [0-9a-f]{64} is not the expected 0000"):
        download_omniglot(tmp_path / "data", ["images_background_small1"], base_url=url,
                          progress=False)
    assert list((tmp_path / "data").iterdir()) == []  # no partial file left behind
    (tmp_path / "data" / "images_background_small1.zip").write_bytes(b"old")
    with pytest.raises(DownloadError, match="exists but its SHA-256 .* remove it"):
        download_omniglot(tmp_path / "data", ["images_background_small1"], base_url=url,
                          progress=False)


def test_archive_without_known_sum_must_be_a_zip(tmp_path, mirror):
    url, _ = mirror
    (tmp_path / "mirror" / "images_evaluation.zip").write_text("<html>a login page</html>")
    with pytest.raises(DownloadError, match="not a zip archive; discarded"):
        download_omniglot(tmp_path / "data", ["images_evaluation"], base_url=url, progress=False)


def test_offline_is_one_line_saying_where_to_put_the_files(tmp_path, monkeypatch, capsys):
    def offline(*args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(urllib.request, "urlopen", offline)
    target = tmp_path / "omniglot"
    assert main(["data", "omniglot", "--to", str(target), "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and err.startswith("metarl: error: cannot download https://github.com/"
                                              "brendenlake/omniglot/raw/master/python/")
    assert f"put it at {target / 'images_background.zip'}" in err
    with pytest.raises(DownloadError, match="unknown Omniglot archive 'images_small'"):
        download_omniglot(target, ["images_small"])
