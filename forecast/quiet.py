"""Import TensorFlow without the C++ start-up lines it prints whatever TF_CPP_MIN_LOG_LEVEL says.

TensorFlow 2.21 writes "All log messages before absl::InitializeLog() is called are written
to STDERR" and "oneDNN custom operations are on" from its shared libraries while they load,
before its log level applies. The CLI and the served model import it through here; every
other line written during the import is passed on.
"""

from __future__ import annotations

import os
import re
import sys
import tempfile

_NOISE = re.compile(
    r"All log messages before absl::InitializeLog\(\) is called"
    r"|port\.cc:\d+\] oneDNN custom operations are on"
)


def import_tensorflow_quietly() -> None:
    """Import TensorFlow once, dropping its start-up noise unless TF_CPP_MIN_LOG_LEVEL is 0."""
    if "tensorflow" in sys.modules or os.environ.get("TF_CPP_MIN_LOG_LEVEL", "2") == "0":
        import tensorflow  # noqa: F401

        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)  # the C++ side writes to the file descriptor, not sys.stderr
        try:
            import tensorflow  # noqa: F401
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
        capture.seek(0)
        lines = capture.read().decode(errors="replace").splitlines(keepends=True)
    sys.stderr.write("".join(line for line in lines if not _NOISE.search(line)))
