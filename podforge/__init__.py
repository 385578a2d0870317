"""Podforge core: what is neither a flow nor a task.

The script model, configuration, the engine contract and registry, cache keys, media helpers
(ffmpeg graphs, loudness, subtitles) and the output layout live here. Flows in ``flows/`` and tasks in
``tasks/`` are thin layers on top of it.
"""

__version__ = "0.1.0"
