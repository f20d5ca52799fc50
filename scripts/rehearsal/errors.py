"""The rehearsal's one error: a step that did not hold."""


class Failed(Exception):
    """A step of the rehearsal did not hold; the message says which and why."""
