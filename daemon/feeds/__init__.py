"""Feeds: landing folders watched, files settled and imported, windows scheduled, runs recorded."""
