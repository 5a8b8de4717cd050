"""The warning category of everything deai wants a user to read without stopping the work.

A leaf module, so every layer (data, privacy, engine) can raise it; the CLI prints each as one
``warning: ...`` line on stderr.
"""


class DeaiWarning(UserWarning):
    """Something a user should read, that does not stop the work (the CLI prints it as ``warning: ...``)."""
