"""Datasets that textenv tasks draw prompts and labels from, loaded offline from packages."""
