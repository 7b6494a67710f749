"""Bundled strategies of botframe (installed as ``botframe_strategies``)."""
