"""Artifact bytes in a folder or any fsspec location, always checked against their SHA-256 on the way back."""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

from shipyard.errors import IntegrityError, NotFound, StorageError

if TYPE_CHECKING:
    from shipyard.registry.entities import ModelVersion

_CHUNK = 1 << 20
_SEAL_SCHEME = "shipyard-artifact-seal/1"


def sha256_hex(data: bytes) -> str:
    """Hex SHA-256 of ``data``.

    >>> sha256_hex(b"")[:12]
    'e3b0c44298fc'
    """
    return hashlib.sha256(data).hexdigest()


def seal(flavor: str, sha256: str) -> str:
    """The hash that binds a version's flavor to its artifact: SHA-256 over the flavor name and the artifact's
    SHA-256. The registry stores it with the version; a row whose flavor was changed afterwards (to send the
    bytes to another flavor's loader) no longer matches it, and :meth:`ArtifactStore.read` refuses it.

    >>> seal("sklearn", "ab" * 32) == seal("river", "ab" * 32)
    False
    """
    return hashlib.sha256(f"{_SEAL_SCHEME}\0{flavor}\0{sha256}".encode()).hexdigest()


class ArtifactStore:
    """Writes each artifact once under a fresh key and reads it back only if its hash still matches.

    ``root`` is a local folder or an fsspec URL (``s3://bucket/prefix``, ``memory://x``, ...).

    >>> import tempfile
    >>> store = ArtifactStore(tempfile.mkdtemp())
    >>> uri = store.put("fraud", b"model bytes", ".bin")
    >>> store.get(uri, sha256_hex(b"model bytes"), label="fraud:1")
    b'model bytes'
    """

    def __init__(self, root: str) -> None:
        import fsspec

        self.root = root
        self._fs, self._base = fsspec.core.url_to_fs(root)
        self._local = self._fs.protocol in ("file", "local") or "file" in tuple(self._fs.protocol)

    def put(self, name: str, data: bytes, suffix: str) -> str:
        """Store ``data`` under a new unique key below ``name``; return its URI."""
        key = f"{name}/{uuid.uuid4().hex}/model{suffix}"
        try:
            if self._local:
                path = Path(self._base) / key
                path.parent.mkdir(parents=True, exist_ok=True)
                view = memoryview(data)
                with open(path, "xb") as handle:
                    # Chunked writes: one huge write() is several times slower on common kernels.
                    for start in range(0, len(view), _CHUNK):
                        handle.write(view[start : start + _CHUNK])
                    handle.flush()
                    os.fsync(handle.fileno())
                return path.resolve().as_uri()
            path_str = f"{self._base.rstrip('/')}/{key}"
            self._fs.pipe_file(path_str, data)
            return str(self._fs.unstrip_protocol(path_str))
        except OSError as exc:
            raise StorageError(f"cannot write the artifact to {self.root}: {exc}") from None

    def get(self, uri: str, sha256: str, *, label: str) -> bytes:
        """The bytes at ``uri``, or :class:`IntegrityError` if they no longer hash to ``sha256``."""
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(uri)
            data: bytes = fs.cat_file(path)
        except FileNotFoundError:
            raise NotFound(f"the artifact of {label} is missing at {uri}; the artifact store was changed") from None
        except OSError as exc:
            raise StorageError(f"cannot read the artifact of {label} at {uri}: {exc}") from None
        actual = sha256_hex(data)
        if actual != sha256:
            name, _, version = label.partition(":")
            raise IntegrityError(name, int(version or 0), sha256, actual)
        return data

    def read(self, version: ModelVersion) -> bytes:
        """The artifact of ``version``, after checking that its flavor is the one it was registered with and
        that its bytes still hash to the recorded SHA-256 (:class:`IntegrityError` otherwise)."""
        if version.seal != seal(version.flavor, version.sha256):
            raise IntegrityError(
                version.name,
                version.version,
                version.seal,
                seal(version.flavor, version.sha256),
                detail=f"its registry entry (flavor {version.flavor!r}, sha256 {version.sha256}) is not the one "
                "it was registered with, so its artifact would be read by the wrong loader",
            )
        return self.get(version.artifact_uri, version.sha256, label=version.ref)

    def delete(self, uri: str) -> None:
        """Remove an artifact that no registry entry will point to (after a failed registration)."""
        import fsspec

        try:
            fs, path = fsspec.core.url_to_fs(uri)
            fs.rm_file(path)
        except OSError:
            return
