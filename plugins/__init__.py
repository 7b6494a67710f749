"""First-party botframe plugins (installed as ``botframe_plugins``)."""
