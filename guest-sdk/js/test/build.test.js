// The build command's errors, and how it stages a module for componentize-js. The tests that
// need componentize-js (and es-module-lexer, which it brings) find it through
// BATON_COMPONENTIZE_JS, as the build does, and are skipped without it; tests/tests/polyglot_js.rs
// runs this directory with it set.

import assert from "node:assert/strict";
import { mkdirSync, mkdtempSync, readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, test } from "node:test";

import { BuildError, build, findComponentizeJs, findWit, main, stage } from "baton-worker/build";

const TOOLS = process.env.BATON_COMPONENTIZE_JS;
const needsTools = { skip: TOOLS ? false : "BATON_COMPONENTIZE_JS is not set (a directory with componentize-js)" };

/** es-module-lexer, from beside componentize-js. */
async function lexer() {
  const lex = createRequire(findComponentizeJs(TOOLS))("es-module-lexer");
  await lex.init;
  return lex;
}

/** A temporary directory holding `files` (path -> text). */
function tree(files) {
  const dir = mkdtempSync(join(tmpdir(), "baton-worker-test-"));
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}

describe("the build", () => {
  test("finds the repository's contract, and says how to point at another", () => {
    assert.ok(findWit().endsWith("wit"));
    assert.throws(() => findWit("/nonexistent"), (e) => e instanceof BuildError && /--wit \(or BATON_WIT\)/.test(e.message));
  });

  test("without componentize-js, it says how to install it", () => {
    assert.throws(
      () => findComponentizeJs("/nonexistent"),
      (e) => e instanceof BuildError && e.message.includes("npm install @bytecodealliance/componentize-js@0.23"),
    );
  });

  test("wants a JavaScript module and an output", async () => {
    await assert.rejects(build("app.py", "/tmp/never.wasm"), /app\.py: give the JavaScript module that registers the commands/);
    const errors = [];
    const original = console.error;
    console.error = (line) => errors.push(line);
    try {
      assert.equal(await main(["app.js"]), 2);
    } finally {
      console.error = original;
    }
    assert.match(errors.join("\n"), /give one module and -o OUT\.wasm/);
  });

  test("stages the module's relative imports, the SDK's imports rewritten", needsTools, async () => {
    const dir = tree({
      "app/app.js": 'import { command } from "baton-worker";\nimport { rate } from "../lib/rate.js";\ncommand("a.b", rate);\n',
      "lib/rate.js": 'import { Failure } from "baton-worker";\nexport const rate = () => { throw Failure.fatal("x", "y"); };\nconst later = () => import("baton-worker/testing");\n',
      "lib/unused.js": "this is not JavaScript",
    });
    const staged = mkdtempSync(join(tmpdir(), "baton-worker-stage-"));
    const entry = stage(join(dir, "app/app.js"), staged, await lexer());
    assert.equal(entry, ".baton-worker-entry.js");
    assert.match(readFileSync(join(staged, entry), "utf8"), /import "\.\/app\/app\.js";/);
    assert.match(readFileSync(join(staged, "app/app.js"), "utf8"), /from "\.\.\/\.baton-worker\/index\.js"/);
    const rate = readFileSync(join(staged, "lib/rate.js"), "utf8");
    assert.match(rate, /from "\.\.\/\.baton-worker\/index\.js"/);
    assert.match(rate, /import\("\.\.\/\.baton-worker\/testing\.js"\)/);
    assert.ok(readFileSync(join(staged, ".baton-worker/handlers.js"), "utf8").includes("class Registry"));
    assert.throws(() => readFileSync(join(staged, "lib/unused.js")), /ENOENT/, "only what is imported is copied");
  });

  test("refuses an import the component cannot resolve, naming the line and the fix", needsTools, async () => {
    const lex = await lexer();
    const cases = {
      'import _ from "lodash";': /app\.js:1: imports "lodash", a package: .*npx esbuild app\.js --bundle --format=esm --external:baton-worker/,
      'import { readFileSync } from "node:fs";': /imports node:fs, one of Node's own modules/,
      '\nimport "./gone.js";': /app\.js:2: imports "\.\/gone\.js", but there is no file .*gone\.js \(ES modules name the file in full/,
      'import "./util";': /no file .*util \(ES modules name the file in full, e\.g\. \.\/util\.js\)/,
      'const m = "x"; import(m);': /import\(\) of a computed specifier cannot be followed/,
      'import "baton-worker/nope";': /"baton-worker\/nope" is no module of baton-worker; it has baton-worker, baton-worker\/testing/,
    };
    for (const [source, error] of Object.entries(cases)) {
      const dir = tree({ "app.js": source });
      assert.throws(() => stage(join(dir, "app.js"), mkdtempSync(join(tmpdir(), "s-")), lex), error, source);
    }
  });

  test("a module that registers no command is refused with the fix", needsTools, async () => {
    const dir = tree({ "empty.js": 'import { command } from "baton-worker";\n' });
    await assert.rejects(
      build(join(dir, "empty.js"), join(dir, "empty.wasm"), { componentizeJs: TOOLS, quiet: true }),
      /empty\.js registers no command: call command\(NAME, handler\) from "baton-worker" at its top level/,
    );
  });

  test("an exception at the module's top level is reported with its message", needsTools, async () => {
    const dir = tree({ "bad.js": 'import { command } from "baton-worker";\ncommand("ok.x", () => 1);\nthrow new Error("no config at build time");\n' });
    await assert.rejects(
      build(join(dir, "bad.js"), join(dir, "bad.wasm"), { componentizeJs: TOOLS, quiet: true }),
      (e) => e instanceof BuildError && /componentize-js could not build/.test(e.message) && /no config at build time/.test(e.message),
    );
  });
});
