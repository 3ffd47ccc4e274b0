"""Hits and `doc=` filters resolved through the manifest, so that they name paths that exist now.

Design: a page is stored once per content hash; its payload keeps the path it was first stored under. Copies
(two paths, one hash), renames (``mv a.pdf b.pdf && docrag index --prune``) and deleting one of two copies
change only the manifest. So readers never trust the payload's path: a ``doc=`` filter becomes the set of
hashes whose current paths match (`filter_hashes`), and each hit gets its hash's current paths
(`with_current_paths`). Nothing to update on alias or removal, nothing that can drift.
"""

from __future__ import annotations

import dataclasses

from .manifest import Manifest
from .store.points import Hit


def filter_hashes(manifest: Manifest, doc_filter: str | None) -> list[str] | None:
    """The content hashes a ``doc=SUBSTRING`` filter selects (None: no filter; [] : nothing matches)."""
    if not doc_filter:
        return None
    return manifest.hashes_matching(doc_filter)


def with_current_paths(hits: list[Hit], manifest: Manifest) -> list[Hit]:
    """Each hit with `doc_path` = a path its content has now and `doc_paths` = all of them.

    Hits whose content no manifest record claims (pages of a document being removed right now) are dropped.
    """
    paths = manifest.paths_by_hash({h.doc_hash for h in hits})
    out = []
    for hit in hits:
        current = paths.get(hit.doc_hash)
        if not current:
            continue
        out.append(dataclasses.replace(hit, doc_path=current[0], doc_paths=list(current)))
    return out
