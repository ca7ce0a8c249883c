#!/usr/bin/env node
// Compiles contracts/MintOnDemand.sol with solc-js (npm `solc`) and writes the artifact the Python
// side loads: contracts/build/MintOnDemand.json. Output is deterministic so the committed artifact
// can be checked against a fresh compile.
//
// Usage: node contracts/compile.js [--out DIR]
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const CONTRACTS_DIR = __dirname;
const REPO_ROOT = path.resolve(CONTRACTS_DIR, "..");
const NODE_MODULES = path.join(REPO_ROOT, "node_modules");
const CONTRACT_NAME = "MintOnDemand";
const SOURCE_NAME = `${CONTRACT_NAME}.sol`;

const SETTINGS = {
  optimizer: { enabled: true, runs: 200 },
  evmVersion: "cancun",
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object"] },
  },
};

function parseArgs(argv) {
  let out = path.join(CONTRACTS_DIR, "build");
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--out") {
      if (i + 1 >= argv.length) throw new Error("--out needs a directory");
      out = path.resolve(argv[++i]);
    } else if (arg.startsWith("--out=")) {
      out = path.resolve(arg.slice("--out=".length));
    } else {
      throw new Error(`unknown argument: ${arg} (usage: node contracts/compile.js [--out DIR])`);
    }
  }
  return { out };
}

// Resolves "@openzeppelin/contracts/..." (and any other package import) from node_modules.
function findImports(importPath) {
  const candidates = [path.join(NODE_MODULES, importPath), path.join(CONTRACTS_DIR, importPath)];
  for (const candidate of candidates) {
    if (fs.existsSync(candidate)) {
      return { contents: fs.readFileSync(candidate, "utf8") };
    }
  }
  return { error: `File not found: ${importPath} (did you run \`npm install\`?)` };
}

function main() {
  const { out } = parseArgs(process.argv.slice(2));
  const input = {
    language: "Solidity",
    sources: { [SOURCE_NAME]: { content: fs.readFileSync(path.join(CONTRACTS_DIR, SOURCE_NAME), "utf8") } },
    settings: SETTINGS,
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const diagnostics = output.errors || [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  for (const d of diagnostics.filter((d) => d.severity !== "error")) {
    process.stderr.write(d.formattedMessage || d.message);
  }
  if (errors.length > 0) {
    for (const e of errors) process.stderr.write(e.formattedMessage || e.message);
    process.stderr.write(`compile failed: ${errors.length} error(s)\n`);
    process.exit(1);
  }

  const compiled = output.contracts && output.contracts[SOURCE_NAME] && output.contracts[SOURCE_NAME][CONTRACT_NAME];
  if (!compiled) {
    process.stderr.write(`compile failed: no ${CONTRACT_NAME} in solc output\n`);
    process.exit(1);
  }

  const artifact = {
    contractName: CONTRACT_NAME,
    abi: compiled.abi,
    bytecode: "0x" + compiled.evm.bytecode.object,
    deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
    compiler: {
      version: solc.version(),
      settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
    },
  };
  fs.mkdirSync(out, { recursive: true });
  const target = path.join(out, `${CONTRACT_NAME}.json`);
  fs.writeFileSync(target, JSON.stringify(artifact, null, 2) + "\n");
  process.stdout.write(`wrote ${path.relative(process.cwd(), target) || target}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`compile failed: ${err.message}\n`);
  process.exit(1);
}
