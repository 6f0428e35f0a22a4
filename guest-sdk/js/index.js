// Baton workers in JavaScript.
//
// Register the functions that perform your commands:
//
//     import { command, Failure } from "baton-worker";
//
//     command("fraud.check", (req, ctx) => {
//       if (!req.order_id) throw Failure.fatal("no_order", "which order?");
//       return { score: 0.1 };
//     });
//
// then build the module into a WebAssembly plugin the host runs itself:
// `npx baton-worker-build app.js -o app.wasm` (build.js, over componentize-js; component.js
// is the glue it uses). `baton-worker/testing` runs a command without a host. This module
// imports nothing: it runs the same in Node and in the component.

export {
  Context,
  Failure,
  INTERNAL,
  INVALID_INPUT,
  INVALID_OUTPUT,
  MAX_MESSAGE,
  Registry,
  UNKNOWN_COMMAND,
  command,
  registry,
} from "./handlers.js";

/** This SDK's version. */
export const VERSION = "0.1.0";
