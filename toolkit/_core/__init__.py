"""Internal plumbing every room may use; imports nothing from the rooms above.

- ``validation``: the shared argument checks and :class:`InputError`.
- ``digests``: sha256 of files, weights, texts, tokenizers and chat templates.
- ``folders``: a folder written beside its target and swapped in by rename.
- ``store``: the many-writer cell store (one file per finished cell, claims with heartbeats).
"""

__all__: list[str] = []
