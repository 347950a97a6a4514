"""Who may call the service, and which stores it may read.

Tokens are kept as SHA-256 digests and compared in constant time. A store path in a job spec
must resolve (symlinks followed, ``..`` refused) to a folder inside one of the configured store
roots.
"""

import hmac
from pathlib import Path

from services.settings import token_hash


class StoreAccessError(Exception):
    """A store path outside the configured roots (HTTP 403)."""


def token_is_valid(token, hashes):
    digest = token_hash(token)
    return any(hmac.compare_digest(digest, expected) for expected in hashes)


def resolve_store(path, roots):
    """The real path of store ``path`` (relative paths are taken under the first root).

    Raises StoreAccessError when ``path`` holds a ``..`` part, or when it (after following
    symlinks) is not inside a root.
    """
    given = Path(path)
    if ".." in given.parts:
        raise StoreAccessError(f"store path {path!r} may not contain '..'")
    candidate = given if given.is_absolute() else roots[0] / given
    real = candidate.resolve()
    if not any(real == root or root in real.parents for root in roots):
        raise StoreAccessError(
            f"store path {path!r} is outside the service's store roots (symlinks are followed)"
        )
    return real
