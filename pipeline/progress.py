"""Progress lines for local runs: which component runs, which is cached, how long each took,
without the thousands of INFO lines that TFX and Beam write."""
from __future__ import annotations

import logging
import sys
import time

from absl import logging as absl_logging

_SHOWN = ("Component %s is running.", "Component %s is finished.", "A cached execution %d is used.")
_OURS = ("SwipeExampleGen", "Evaluator:", "training priors", "recalibrated")
_HIDDEN = ("ArtifactQuery.property_predicate is not supported.",)


class _ProgressFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        msg = str(record.msg)
        if msg in _HIDDEN:
            return False
        return record.levelno >= logging.WARNING or msg in _SHOWN or msg.startswith(_OURS)


class _ElapsedFormatter(logging.Formatter):
    def __init__(self):
        super().__init__()
        self._t0 = time.time()

    def format(self, record: logging.LogRecord) -> str:
        text = record.getMessage()
        return f"[{time.time() - self._t0:6.0f}s] {text if len(text) < 400 else text[:400] + ' ...'}"


def enable() -> None:
    """Shows the progress lines on stderr; everything else at WARNING and above, as before."""
    absl_logging.get_absl_handler().setLevel(logging.WARNING)
    logger = logging.getLogger("absl")
    if not any(isinstance(h.filters[0] if h.filters else None, _ProgressFilter) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.addFilter(_ProgressFilter())
        handler.setFormatter(_ElapsedFormatter())
        logger.addHandler(handler)
        logger.propagate = False
    logger.setLevel(logging.INFO)
    # The Transform executor lowers absl's verbosity to WARNING mid-run; keep INFO for our filter.
    logger.setLevel = lambda level: None
