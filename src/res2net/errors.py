"""The library's error base: the CLI prints these as one clear line instead of a traceback."""


class Res2NetError(Exception):
    """A problem with the user's input or environment (bad file, unknown model, no network)."""
