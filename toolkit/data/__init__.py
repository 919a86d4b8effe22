"""Tasks and their text: ``task`` (:class:`Task`, ``Example``) <- ``datasets`` (bundled datasets, the
dataset registry, demonstrations) <- ``prompts`` (the one encoding path: prompt text, token ids, word spans)."""

__all__: list[str] = []
