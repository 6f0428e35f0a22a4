"""Baton workers in Python.

Decorate the functions that perform your commands, then serve them::

    from baton_worker import command, Failure, Context

    @command("fraud.score")
    def score(req: dict, ctx: Context) -> dict:
        if "order_id" not in req:
            raise Failure.fatal("no_order", "which order?")
        return {"score": 0.1}

and run ``python -m baton_worker.bus --module app --redis redis://127.0.0.1:6379``
(or ``baton_worker.bus.run(...)`` from your own code). The handler API in this module imports
nothing beyond the standard library and knows nothing of the transport: ``baton_worker.bus``
serves the registered functions over Baton's Redis Streams bus (docs/PROTOCOL.md), and
``python -m baton_worker.build app.py -o app.wasm`` builds them into a WebAssembly plugin the
host runs itself (``baton_worker.component`` is its glue; it needs componentize-py's bindings,
so nothing here imports it).
"""

from .handlers import Context, Failure, Registry, command, registry

__all__ = ["Context", "Failure", "Registry", "command", "registry"]
__version__ = "0.1.0"
