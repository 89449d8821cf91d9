"""The one exception family of cordmap.

Every message is written for the clinician-researcher at the keyboard: it names the
file or series at fault and says what to do about it. The CLI prints the message and
exits non-zero; `--debug` shows the traceback.
"""


class CordmapError(Exception):
    """An input, a parameter or a state that cordmap cannot work with."""
