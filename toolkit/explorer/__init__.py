"""The notebook explorer: ``steps`` (one prediction explained step by step), ``faithfulness`` (its
faithfulness axis under pruning), ``html`` (the rendered page), ``widgets`` (ipywidgets front ends)."""

__all__: list[str] = []
