// Parse and validate an AsyncAPI document with @asyncapi/parser (spec schema + Spectral rules).
// Prints one JSON line: {"errors": [...], "warnings": [...], "messages": [{"id", "examples"}]}; exit 1 on errors.
import { readFileSync } from "node:fs";
import { Parser } from "@asyncapi/parser";

const path = process.argv[2];
const parser = new Parser();
const { document, diagnostics } = await parser.parse(readFileSync(path, "utf8"), { source: path });
const show = (d) => ({ code: d.code, message: d.message, path: d.path.join(".") });
const errors = diagnostics.filter((d) => d.severity === 0).map(show);
const warnings = diagnostics.filter((d) => d.severity === 1).map(show);
const messages = document
  ? document.allMessages().all().map((m) => ({ id: m.id(), examples: m.examples().length }))
  : [];
console.log(JSON.stringify({ errors, warnings, messages }));
process.exit(errors.length ? 1 : 0);
