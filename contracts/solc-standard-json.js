#!/usr/bin/env node
// A `solc` command for tools that call the native compiler, which cannot be downloaded here
// (Slither, through crytic-compile: `slither MintOnDemand.sol --solc-standard-json --solc
// ./solc-standard-json.js`, run from contracts/). It answers `--version` as solc does and runs
// `--standard-json` with the project's solc-js, the project's optimizer and EVM version
// (contracts/compile.js's SETTINGS, so the bytecode the tool analyses is the deployed one) and
// imports resolved from node_modules. Sources given as `urls` (crytic-compile's way) are read
// from disk, relative to the working directory.
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");
const { SETTINGS, findImports } = require("./compile.js");

function standardJson() {
  const input = JSON.parse(fs.readFileSync(0, "utf8"));
  const sources = {};
  for (const [name, source] of Object.entries(input.sources || {})) {
    const file = (source.urls && source.urls[0]) || name;
    // "./MintOnDemand.sol" is "MintOnDemand.sol", the unit name compile.js gives it: the name
    // is in the metadata hash at the end of the bytecode
    sources[path.normalize(name)] =
      source.content === undefined
        ? { content: fs.readFileSync(path.resolve(file), "utf8") }
        : { content: source.content };
  }
  input.sources = sources;
  input.settings = {
    ...(input.settings || {}),
    optimizer: SETTINGS.optimizer,
    evmVersion: SETTINGS.evmVersion,
  };
  delete input.settings.remappings; // imports resolve through node_modules (findImports)
  process.stdout.write(solc.compile(JSON.stringify(input), { import: findImports }));
}

const args = process.argv.slice(2);
if (args.includes("--version")) {
  process.stdout.write(
    `solc, the solidity compiler commandline interface\nVersion: ${solc.version()}\n`
  );
} else if (args.includes("--standard-json")) {
  standardJson();
} else {
  process.stderr.write(
    "solc-standard-json.js answers --version and --standard-json only (it wraps solc-js)\n"
  );
  process.exit(2);
}
