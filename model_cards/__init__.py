"""Jinja templates of the model cards, installed with the package as ``esarm.model_cards``."""
