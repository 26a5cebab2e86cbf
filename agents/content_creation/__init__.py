"""Content creation: Researcher -> Writer -> Editor, over in-repo sources and a style guide."""
