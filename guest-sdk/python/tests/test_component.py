"""The component glue (``baton_worker.component``) against stand-ins for the bindings
componentize-py generates, and the build command's errors (no componentize-py needed)."""

import dataclasses
import importlib
import io
import json
import sys
import types as pytypes
import unittest
from contextlib import redirect_stderr
from pathlib import Path
from typing import Optional
from unittest import mock

from baton_worker import Failure, command
from baton_worker import build as build_mod


def fake_bindings():
    """Modules shaped like ``componentize-py -w worker-plugin bindings``' output."""

    @dataclasses.dataclass(frozen=True)
    class Err(Exception):
        value: object

    @dataclasses.dataclass
    class Meta:
        transaction_id: str
        correlation_id: str
        idempotency_key: str
        step: str
        attempt: int
        traceparent: Optional[str]

    @dataclasses.dataclass
    class Command:
        name: str
        payload: str
        meta: Meta

    @dataclasses.dataclass
    class WitFailure:
        code: str
        message: str
        retryable: bool

    @dataclasses.dataclass
    class CommandSpec:
        name: str
        input_schema: Optional[str]
        output_schema: Optional[str]

    cpt = pytypes.ModuleType("componentize_py_types")
    cpt.Err = Err
    wit_world = pytypes.ModuleType("wit_world")
    exports = pytypes.ModuleType("wit_world.exports")
    exports.Worker = type("Worker", (), {})
    imports = pytypes.ModuleType("wit_world.imports")
    wtypes = pytypes.ModuleType("wit_world.imports.types")
    wtypes.Meta, wtypes.Command, wtypes.Failure, wtypes.CommandSpec = Meta, Command, WitFailure, CommandSpec
    wit_world.exports, wit_world.imports, imports.types = exports, imports, wtypes
    return {
        "componentize_py_types": cpt,
        "wit_world": wit_world,
        "wit_world.exports": exports,
        "wit_world.imports": imports,
        "wit_world.imports.types": wtypes,
    }


@command("glue.echo", input_schema={"type": "object"})
def echo(req, ctx):
    return {"req": req, "attempt": ctx.attempt, "step": ctx.step, "traceparent": ctx.traceparent}


@command("glue.fatal")
def fatal(req, ctx):
    raise Failure.fatal("card_declined", "declined")


@command("glue.retry")
def retry(req, ctx):
    raise Failure.retryable("busy", "later")


@command("glue.crash")
def crash(req, ctx):
    return {}["missing"]


@command("glue.exit")
def exit_(req, ctx):
    raise SystemExit(1)


class ComponentTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.mods = fake_bindings()
        cls.patch = mock.patch.dict(sys.modules, cls.mods)
        cls.patch.start()
        sys.modules.pop("baton_worker.component", None)
        cls.component = importlib.import_module("baton_worker.component")
        cls.worker = cls.component.Worker()
        cls.types = cls.mods["wit_world.imports.types"]
        cls.Err = cls.mods["componentize_py_types"].Err

    @classmethod
    def tearDownClass(cls):
        sys.modules.pop("baton_worker.component", None)
        cls.patch.stop()

    def cmd(self, name, payload="{}", attempt=2):
        meta = self.types.Meta("t-1", "t-1/s/forward/2", "t-1/s/forward", "s", attempt, "00-ab-cd-01")
        return self.types.Command(name, payload, meta)

    def err(self, name, payload="{}"):
        with self.assertRaises(self.Err) as caught:
            self.worker.handle(self.cmd(name, payload))
        return caught.exception.value

    def test_describe_lists_the_registry_with_schemas_as_text(self):
        specs = {s.name: s for s in self.worker.describe()}
        self.assertEqual(specs["glue.echo"].input_schema, '{"type":"object"}')
        self.assertIsNone(specs["glue.echo"].output_schema)
        self.assertIsInstance(specs["glue.echo"], self.types.CommandSpec)

    def test_ok_is_json_text_and_the_context_comes_from_meta(self):
        out = json.loads(self.worker.handle(self.cmd("glue.echo", '{"a": 1}')))
        self.assertEqual(out, {"req": {"a": 1}, "attempt": 2, "step": "s", "traceparent": "00-ab-cd-01"})

    def test_failures_keep_code_and_retryable(self):
        f = self.err("glue.fatal")
        self.assertEqual((f.code, f.message, f.retryable), ("card_declined", "declined", False))
        f = self.err("glue.retry")
        self.assertEqual((f.code, f.retryable), ("busy", True))

    def test_every_exception_is_internal_with_its_traceback(self):
        f = self.err("glue.crash")
        self.assertEqual(f.code, "internal")
        self.assertFalse(f.retryable)
        self.assertIn("KeyError", f.message)
        self.assertIn("Traceback", f.message)
        f = self.err("glue.exit")
        self.assertEqual(f.code, "internal")
        self.assertIn("SystemExit", f.message)

    def test_a_payload_that_is_not_json_and_an_unknown_command(self):
        self.assertEqual(self.err("glue.echo", "{nope").code, "invalid_input")
        self.assertEqual(self.err("glue.nobody").code, "unknown_command")


class BuildTest(unittest.TestCase):
    def test_finds_the_repositorys_contract(self):
        wit = build_mod.find_wit()
        self.assertTrue((wit / "saga.wit").is_file())
        with self.assertRaises(build_mod.BuildError) as caught:
            build_mod.find_wit("/nonexistent")
        self.assertIn("--wit", str(caught.exception))

    def test_without_componentize_py_it_says_how_to_install_it(self):
        with mock.patch("importlib.util.find_spec", return_value=None), mock.patch("shutil.which", return_value=None):
            err = io.StringIO()
            with redirect_stderr(err):
                code = build_mod.main([str(Path(__file__)), "-o", "/tmp/never.wasm"])
        self.assertEqual(code, 2)
        self.assertIn("pip install 'componentize-py==0.25.*'", err.getvalue())

    def test_the_module_must_be_a_python_file(self):
        with self.assertRaises(build_mod.BuildError) as caught:
            build_mod.build("app", "/tmp/never.wasm")
        self.assertIn("give the Python file", str(caught.exception))


if __name__ == "__main__":
    unittest.main()
