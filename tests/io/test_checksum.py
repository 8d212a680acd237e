"""medfeat.io.checksum: SHA-256 of files and folders, streamed."""

import hashlib

from medfeat.io.checksum import sha256_file, sha256_files


def test_sha256_streams_files_and_folders(tmp_path):
    data = b"x" * (3 << 20) + b"tail"
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "1").write_bytes(data)
    (tmp_path / "d" / "2").write_bytes(b"other")
    assert sha256_file(tmp_path / "d" / "1") == hashlib.sha256(data).hexdigest()
    folder = sha256_file(tmp_path / "d")
    assert folder == sha256_files([tmp_path / "d" / "2", tmp_path / "d" / "1"])
    (tmp_path / "d" / "2").rename(tmp_path / "d" / "0")  # renaming slices does not change the hash
    assert sha256_file(tmp_path / "d") == folder
