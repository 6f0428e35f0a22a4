#!/usr/bin/env node
// Build a Baton worker plugin (a WebAssembly component) from a JavaScript module.
//
//     npx baton-worker-build app.js -o plugins/fraud.wasm
//     node guest-sdk/js/build.js app.js -o plugins/fraud.wasm     (from a checkout)
//
// `app.js` registers its commands with `command` from `baton-worker`. componentize-js
// (https://www.npmjs.com/package/@bytecodealliance/componentize-js) takes one source
// directory and resolves imports as file paths, so the build stages a copy: the module and
// every module it imports by a relative path (found with es-module-lexer, which
// componentize-js depends on), their imports of `baton-worker` rewritten to this SDK's files,
// copied beside them, and an entry module that imports the module and exports the SDK's
// `worker`. componentize-js then builds it against the `worker-plugin` world of the contract
// in `wit/`: one `.wasm` file (SpiderMonkey inside, about 12 MB) for the host's plugin
// directory. The engine is snapshotted after the module's top level ran, at build time, once:
// register commands and do set-up at the top level; what it reads then (the clock, random
// numbers) is frozen into the component.
//
// - `--wit DIR`: the contract (default: `$BATON_WIT`, else the `wit/` of the checkout this
//   package sits in or the current directory is in).
// - `--componentize-js DIR`: where componentize-js is installed: its package directory, or a
//   directory whose `node_modules` has it (default: `$BATON_COMPONENTIZE_JS`, else found from
//   this package like any import). Install it with
//   `npm install @bytecodealliance/componentize-js@0.23`.
// - `--quiet`: print nothing but errors.

import { existsSync, mkdirSync, mkdtempSync, readFileSync, realpathSync, rmSync, statSync, writeFileSync } from "node:fs";
import { builtinModules, createRequire } from "node:module";
import { tmpdir } from "node:os";
import { basename, dirname, extname, isAbsolute, join, relative, resolve, sep } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";
import { parseArgs } from "node:util";

/** The world a worker plugin targets. */
export const WORLD = "worker-plugin";
/** The componentize-js release this SDK is tested with, as npm installs it. */
export const COMPONENTIZE_JS = "@bytecodealliance/componentize-js@0.23";
/** WASI features of the engine left out: `fetch-event` (an HTTP server, which the host never
 * calls) and `http` (`fetch`, untested with this SDK: the host links `wasi:http` and would
 * let it reach what a plugin's manifest grants). Without them the component imports no
 * `wasi:http` at all. stdio (`console`, error reports), random and clocks stay. */
export const DISABLED_FEATURES = ["http", "fetch-event"];

/** This package's directory. */
const SDK = dirname(fileURLToPath(import.meta.url));
/** The SDK's modules a worker may import, by specifier. */
const SDK_MODULES = {
  "baton-worker": "index.js",
  "baton-worker/testing": "testing.js",
  "baton-worker/component": "component.js",
};
/** The SDK's runtime, copied into every build. */
const SDK_FILES = ["index.js", "handlers.js", "component.js", "testing.js"];
/** Where the staged copy keeps the SDK and the entry module (names a worker's files will
 * not have). */
const SDK_DIR = ".baton-worker";
const ENTRY = ".baton-worker-entry.js";
/** Said by the entry module when the worker registers nothing; the build looks for it. */
const NO_COMMAND = "registers no command";

/** Why a build cannot go on, as a sentence that says what to do. */
export class BuildError extends Error {
  constructor(message) {
    super(message);
    this.name = "BuildError";
  }
}

/** The directory of the `baton:saga` contract: `given`, `$BATON_WIT`, or the `wit/` of an
 * ancestor of this package or of the current directory. */
export function findWit(given) {
  const named = given || process.env.BATON_WIT;
  if (named) {
    if (!existsSync(join(named, "saga.wit"))) {
      throw new BuildError(`${named} has no saga.wit: point --wit (or BATON_WIT) at the repository's wit/ directory`);
    }
    return resolve(named);
  }
  const starts = [SDK, process.cwd()];
  for (const start of starts) {
    for (let d = resolve(start); ; d = dirname(d)) {
      if (existsSync(join(d, "wit", "saga.wit"))) return join(d, "wit");
      if (dirname(d) === d) break;
    }
  }
  throw new BuildError(
    `cannot find the contract (wit/saga.wit) above ${starts.join(" or ")}: ` +
      "run from a Baton checkout or give --wit DIR (or BATON_WIT)",
  );
}

/** The install hint of a missing componentize-js. */
function installHint(why) {
  return new BuildError(
    `${why}: install it with\n    npm install ${COMPONENTIZE_JS}\n` +
      "(in your project, or beside this package), or give --componentize-js DIR (or BATON_COMPONENTIZE_JS)",
  );
}

/** The file URL of componentize-js's module: from `given` (its package directory, or a
 * directory whose `node_modules` holds it) or `$BATON_COMPONENTIZE_JS`, else resolved from
 * this package as an import would be. */
export function findComponentizeJs(given) {
  const named = given || process.env.BATON_COMPONENTIZE_JS;
  if (!named) {
    try {
      return import.meta.resolve("@bytecodealliance/componentize-js");
    } catch {
      throw installHint("componentize-js is not installed");
    }
  }
  const dirs = [named, join(named, "node_modules", "@bytecodealliance", "componentize-js")];
  for (const dir of dirs) {
    const manifest = join(dir, "package.json");
    if (!existsSync(manifest)) continue;
    const pkg = JSON.parse(readFileSync(manifest, "utf8"));
    if (pkg.name !== "@bytecodealliance/componentize-js") continue;
    const main = pkg.exports?.import ?? pkg.exports?.["."]?.import ?? pkg.main;
    return pathToFileURL(resolve(dir, main)).href;
  }
  throw installHint(`--componentize-js ${named}: no componentize-js there`);
}

/** Whether `spec` names one of Node's own modules. */
function isNodeBuiltin(spec) {
  return spec.startsWith("node:") || builtinModules.includes(spec.split("/")[0]);
}

/** `to` relative to the directory of `from`, as an import specifier (`./x.js`, `../y.js`). */
function specifier(from, to) {
  const rel = relative(dirname(from), to).split(sep).join("/");
  return rel.startsWith(".") ? rel : `./${rel}`;
}

/**
 * The module graph of `module` that the component needs: every file it reaches through
 * relative imports, as `Map(absolute path -> source)`, with the SDK imports of each file
 * (`{ s, e, quoted, target }`: the specifier's span and which SDK file it names). Throws a
 * BuildError for an import the component cannot resolve.
 */
export function moduleGraph(module, lexer) {
  const files = new Map();
  const pending = [resolve(module)];
  while (pending.length) {
    const file = pending.pop();
    if (files.has(file)) continue;
    const source = readFileSync(file, "utf8");
    const sdkImports = [];
    files.set(file, { source, sdkImports });
    if (![".js", ".mjs"].includes(extname(file))) continue;
    let imports;
    try {
      [imports] = lexer.parse(source, file);
    } catch (e) {
      throw new BuildError(`${file} is not a JavaScript module es-module-lexer can read: ${e.message}`);
    }
    for (const imp of imports) {
      if (imp.t === 3) continue; // import.meta
      const spec = imp.n;
      const where = `${relative(process.cwd(), file) || file}:${source.slice(0, imp.ss).split("\n").length}`;
      if (spec === undefined) {
        throw new BuildError(`${where}: import() of a computed specifier cannot be followed; import a string literal`);
      }
      if (spec in SDK_MODULES) {
        sdkImports.push({ s: imp.s, e: imp.e, quoted: imp.t === 2, target: SDK_MODULES[spec] });
      } else if (spec.startsWith("./") || spec.startsWith("../") || isAbsolute(spec)) {
        const target = resolve(dirname(file), spec);
        if (!existsSync(target) || !statSync(target).isFile()) {
          throw new BuildError(`${where}: imports "${spec}", but there is no file ${target} (ES modules name the file in full, e.g. ./util.js)`);
        }
        pending.push(target);
      } else if (spec.startsWith("baton-worker/")) {
        throw new BuildError(`${where}: "${spec}" is no module of baton-worker; it has ${Object.keys(SDK_MODULES).join(", ")}`);
      } else if (isNodeBuiltin(spec)) {
        throw new BuildError(
          `${where}: imports ${spec}, one of Node's own modules, which a component does not have ` +
            "(it runs in the host's sandbox: no files, processes or network); use the contract's imports or leave it out",
        );
      } else {
        throw new BuildError(
          `${where}: imports "${spec}", a package: the build follows relative imports and baton-worker alone. ` +
            `Bundle the packages into one module first, e.g. npx esbuild ${basename(module)} --bundle --format=esm ` +
            "--external:baton-worker --outfile=dist/app.js, and build that",
        );
      }
    }
  }
  return files;
}

/** The deepest directory holding every path of `paths`. */
function commonDir(paths) {
  let dir = dirname(paths[0]);
  while (!paths.every((p) => p.startsWith(dir.endsWith(sep) ? dir : dir + sep))) dir = dirname(dir);
  return dir;
}

/** Copy `module`'s graph and the SDK into `stage` (see the top of this file) and write the
 * entry module; returns the entry's name, relative to `stage`. */
export function stage(module, stageDir, lexer) {
  const files = moduleGraph(module, lexer);
  const base = commonDir([...files.keys()]);
  const name = relative(base, resolve(module)).split(sep).join("/");
  for (const [file, { source, sdkImports }] of files) {
    const rel = relative(base, file);
    if (rel === ENTRY || rel.split(sep)[0] === SDK_DIR) {
      throw new BuildError(`${file}: the build keeps its own files under this name; rename the file`);
    }
    const to = join(stageDir, rel);
    let text = source;
    for (const { s, e, quoted, target } of [...sdkImports].sort((a, b) => b.s - a.s)) {
      const spec = specifier(to, join(stageDir, SDK_DIR, target));
      text = text.slice(0, s) + (quoted ? JSON.stringify(spec) : spec) + text.slice(e);
    }
    mkdirSync(dirname(to), { recursive: true });
    writeFileSync(to, text);
  }
  mkdirSync(join(stageDir, SDK_DIR), { recursive: true });
  for (const f of SDK_FILES) writeFileSync(join(stageDir, SDK_DIR, f), readFileSync(join(SDK, f)));
  const shown = basename(module);
  writeFileSync(
    join(stageDir, ENTRY),
    `// Entry module of the component of ${shown}, written by baton-worker-build.\n` +
      `import "./${name}"; // registers the commands\n` +
      `import { registry } from "./${SDK_DIR}/index.js";\n` +
      `export { worker } from "./${SDK_DIR}/component.js"; // the \`worker\` export\n\n` +
      "if (registry.size === 0) {\n" +
      `  throw new Error(${JSON.stringify(`${shown} ${NO_COMMAND}`)});\n` +
      "}\n",
  );
  return ENTRY;
}

/** componentize-js's `componentize` and `version`, and es-module-lexer (ready to parse),
 * from where `findComponentizeJs` says. */
async function loadTools(given) {
  const url = findComponentizeJs(given);
  let tool;
  try {
    tool = await import(url);
  } catch (e) {
    throw installHint(`componentize-js at ${fileURLToPath(url)} does not load (${e.message})`);
  }
  let lexer;
  try {
    lexer = createRequire(url)("es-module-lexer");
    await lexer.init;
  } catch (e) {
    throw installHint(`es-module-lexer, which componentize-js depends on, does not load from ${fileURLToPath(url)} (${e.message})`);
  }
  return { componentize: tool.componentize, version: tool.version, lexer };
}

/** Build the component of `module` (a `.js` or `.mjs` file) into `output`; returns its path.
 * `options`: `{ wit, componentizeJs, quiet }` as the flags above. */
export async function build(module, output, { wit, componentizeJs, quiet = false } = {}) {
  if (![".js", ".mjs"].includes(extname(module)) || !existsSync(module) || !statSync(module).isFile()) {
    throw new BuildError(`${module}: give the JavaScript module that registers the commands, e.g. app.js`);
  }
  const witDir = findWit(wit);
  const { componentize, version, lexer } = await loadTools(componentizeJs);
  if (!quiet && !String(version).startsWith("0.23.")) {
    console.error(`baton-worker-build: componentize-js ${version}; this SDK is tested with ${COMPONENTIZE_JS}`);
  }
  const out = resolve(output);
  mkdirSync(dirname(out), { recursive: true });
  const started = Date.now();
  const stageDir = realpathSync(mkdtempSync(join(tmpdir(), "baton-worker-build-")));
  const cwd = process.cwd();
  try {
    const entry = stage(module, stageDir, lexer);
    if (!quiet) console.error(`building ${output} from ${module} (componentize-js ${version}, ${witDir})`);
    // componentize-js maps the source's directory, or the current one when that holds the
    // source, to the component's root, and names files in stacks relative to it: from inside
    // the stage, they are the worker's own paths.
    process.chdir(stageDir);
    let component;
    try {
      ({ component } = await componentize({
        sourcePath: entry,
        witPath: witDir,
        worldName: WORLD,
        disableFeatures: DISABLED_FEATURES,
      }));
    } catch (e) {
      const message = String(e?.message ?? e);
      if (message.includes(`${basename(module)} ${NO_COMMAND}`)) {
        throw new BuildError(
          `${module} ${NO_COMMAND}: call command(NAME, handler) from "baton-worker" at its top level`,
        );
      }
      throw new BuildError(`componentize-js could not build ${module}:\n${message}`);
    }
    process.chdir(cwd);
    writeFileSync(out, component);
    if (!quiet) {
      const secs = ((Date.now() - started) / 1000).toFixed(1);
      console.error(`built ${output} (${(component.length / 1e6).toFixed(1)} MB) in ${secs} s`);
    }
    return out;
  } finally {
    process.chdir(cwd);
    rmSync(stageDir, { recursive: true, force: true });
  }
}

const USAGE = `usage: baton-worker-build MODULE.js -o OUT.wasm [--wit DIR] [--componentize-js DIR] [--quiet]

Build a Baton worker plugin (a WebAssembly component) from a JavaScript module that
registers its commands with command() from baton-worker.

  -o, --output FILE        the .wasm file to write, e.g. plugins/fraud.wasm
  --wit DIR                the contract's directory (default: BATON_WIT, else the checkout's wit/)
  --componentize-js DIR    where componentize-js is installed (default: BATON_COMPONENTIZE_JS,
                           else found from this package); npm install ${COMPONENTIZE_JS}
  -q, --quiet              print nothing but errors`;

/** The command line of `build`: 0 when built, 2 when it could not be. */
export async function main(argv = process.argv.slice(2)) {
  let args;
  try {
    args = parseArgs({
      args: argv,
      allowPositionals: true,
      options: {
        output: { type: "string", short: "o" },
        wit: { type: "string" },
        "componentize-js": { type: "string" },
        quiet: { type: "boolean", short: "q" },
        help: { type: "boolean", short: "h" },
      },
    });
  } catch (e) {
    console.error(`baton-worker-build: ${e.message}\n${USAGE}`);
    return 2;
  }
  const { values, positionals } = args;
  if (values.help) {
    console.log(USAGE);
    return 0;
  }
  if (positionals.length !== 1 || !values.output) {
    console.error(`baton-worker-build: give one module and -o OUT.wasm\n${USAGE}`);
    return 2;
  }
  try {
    await build(positionals[0], values.output, {
      wit: values.wit,
      componentizeJs: values["componentize-js"],
      quiet: values.quiet,
    });
  } catch (e) {
    if (!(e instanceof BuildError)) throw e;
    console.error(`baton-worker-build: ${e.message}`);
    return 2;
  }
  return 0;
}

// Run as a program (`node build.js`, or the `baton-worker-build` bin's link to it).
if (process.argv[1] && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url)) {
  process.exitCode = await main();
}
