"""`greeter`: a Baton worker plugin in Python, the example of guest-sdk/python.

Build it into a plugin directory with the SDK (componentize-py installed)::

    PYTHONPATH=guest-sdk/python python -m baton_worker.build \
        plugins/python/greeter/greeter.py -o plugins/target/wasm32-wasip2/release/greeter.wasm

and run the workflow beside it, which greets in Python and notifies in Rust::

    baton run greet --workflows plugins/python/greeter --input '{"name": "Ada"}'
"""

from baton_worker import Context, Failure, command

#: How each known language says hello.
HELLO = {"en": "Hello", "fr": "Bonjour", "de": "Hallo", "es": "Hola"}


@command(
    "greeter.hello",
    input_schema={
        "type": "object",
        "required": ["name"],
        "properties": {"name": {"type": "string"}, "lang": {"type": "string"}},
    },
    output_schema={"type": "object", "required": ["greeting"], "properties": {"greeting": {"type": "string"}}},
)
def hello(req: dict, ctx: Context) -> dict:
    """Greet ``req["name"]`` in ``req["lang"]`` (default English)."""
    name = str(req.get("name", "")).strip()
    if not name:
        raise Failure.fatal("no_name", "whom should I greet? give a non-empty name")
    lang = req.get("lang", "en")
    if lang not in HELLO:
        raise Failure.fatal("unknown_language", f"no greeting in {lang!r}; known: {', '.join(sorted(HELLO))}")
    return {"greeting": f"{HELLO[lang]}, {name}!", "saga": ctx.transaction_id, "attempt": ctx.attempt}
