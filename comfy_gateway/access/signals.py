"""SIGHUP reads API_KEYS_FILE again, in every gateway of this process."""

from __future__ import annotations

import asyncio
import logging
import signal
import weakref

from .keys import KeyRing

log = logging.getLogger(__name__)
_rings: "weakref.WeakSet[KeyRing]" = weakref.WeakSet()


def _reload_all() -> None:
    for ring in list(_rings):
        ring.reload()


def reload_on_sighup(ring: KeyRing) -> None:
    """Called from the app's startup, in its event loop. Harmless where signals cannot be
    handled (not the main thread, no SIGHUP): the keys are then read at start only."""
    if ring.keys_file is None or not hasattr(signal, "SIGHUP"):
        return
    _rings.add(ring)
    try:
        asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, _reload_all)
    except (NotImplementedError, RuntimeError, ValueError):
        log.warning("SIGHUP cannot be handled here: API_KEYS_FILE is read at start only")
