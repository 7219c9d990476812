"""Errors the Blender side reports to the artist."""


class UserError(Exception):
    """Settings that cannot be generated or rendered from; the message says what to fix."""
