"""Adapters to other frameworks, each an optional extra imported only when its module is."""
