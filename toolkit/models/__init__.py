"""A model and its forward pass: ``adapters`` (where each architecture keeps its layers), ``pruned_arch``
(what a removed attention becomes), ``checkpoints`` (the one writer of a model folder), ``manifest``
(how a result was made), ``loading`` (:func:`load_model`), ``forward`` (the one cached-prefix forward),
``scoring`` (label probabilities)."""

__all__: list[str] = []
