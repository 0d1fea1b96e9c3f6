"""Coordinators: the group coordinator (classic protocol) and the committed offsets store."""
