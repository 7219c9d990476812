"""What crosses the worker boundary, defined once for both sides.

The worker (``backend/tools/worker.py``) and the Blender side (``bridge/worker_client.py`` and
its callers) import these. This module imports nothing, so Blender's Python can read it
without torch or numpy; ``protocol.messages`` holds the typed requests and replies.

* ``PROTOCOL``: the JSON-lines protocol's version; the worker says it in its hello.
* The ops a request may name, with the values their replies' arrays use.
"""
from __future__ import annotations

PROTOCOL = 2

OP_PING = "ping"                   # {} -> versions, torch, CUDA
OP_LOAD_SUBJECT = "load_subject"   # {subject} -> the subject's summary, kept warm
OP_PERFORM = "perform"             # messages.PerformRequest -> messages.PerformReply
OP_RENDER_FRAME = "render_frame"   # messages.RenderFrameRequest -> messages.RenderFrameReply
OP_SHUTDOWN = "shutdown"           # {} -> the worker exits
OPS = (OP_PING, OP_LOAD_SUBJECT, OP_PERFORM, OP_RENDER_FRAME, OP_SHUTDOWN)

BACKGROUND_DEPTH = 1e10            # metres; the depth pass where nothing is seen (Blender's Z)
EMPTY_ALPHA = 1e-4                 # coverage under which a pixel counts as empty
FILL_REACH_DEFAULT = 12.0          # frames over which a key's hold fades into emotion from speech
MAX_IMAGE_PIXELS = 16384 * 16384
