"""``zspace explore``: a local web page to move through the latent space of analysed runs.

Python API::

    from zspace.explore import open_runs, build_app, serve
    runs = open_runs(["runs/ae", "runs/vae"])     # checks and loads; reads only
    serve(runs, port=8050)                         # until Ctrl-C; or build_app(runs) for any ASGI server
"""

from zspace.explore.server import (DEFAULT_PORT, Decoder, ExploredRun, build_app, comparable, open_runs,
                                   prepare_run, serve, serving)

__all__ = ["DEFAULT_PORT", "Decoder", "ExploredRun", "build_app", "comparable", "open_runs", "prepare_run", "serve",
           "serving"]
