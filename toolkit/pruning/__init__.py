"""Dropping attention layers and what it costs and saves: ``attention`` (reversible
:func:`drop_attention`, structural :func:`prune_attention`, checksummed save / load), ``export``
(the load-anywhere checkpoint), ``importance`` (layer scores and selection), ``flops``, ``timing``
and ``efficiency`` (parameters, KV bytes, measured latency)."""

__all__: list[str] = []
