"""Exports: files of what the organisation knows, written on fixed windows and delivered to partners."""
