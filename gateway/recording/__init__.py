"""Session recordings.

::

    action runner ──► Recorder.output/input/resize ──► asciicast v2 file
                      (NullRecorder when a session carries no stream)

The writer decodes output with an incremental UTF-8 decoder so characters
split across reads survive, and keeps a running SHA-256 and size of the file
for the session-end audit record.
"""

from gateway.recording.asciicast import AsciicastRecorder, NullRecorder, Recorder

__all__ = ["AsciicastRecorder", "NullRecorder", "Recorder"]
