"""Streamed answers judged in flight: the hold-back window and the per-answer stream guard.

Independent of any one API: the guard reads events through the ``StreamFormat`` and the
framing that the API's module (``extproc.formats``) supplies.
"""
