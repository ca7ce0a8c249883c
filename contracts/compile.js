#!/usr/bin/env node
// Compiles contracts/MintOnDemand.sol and contracts/NaiveBaseline.sol (the gas benchmark's baseline),
// and Chainlink's VRFCoordinatorV2_5Mock from npm `@chainlink/contracts` (the VRF coordinator the
// local chain runs for collections seeded by VRF), with solc-js (npm `solc`) in one standard-JSON run and writes the artifacts the Python side loads:
// contracts/build/<Name>.json, and the ABI of each contract in SHIPPED_ABIS to
// chain/abi/<Name>.abi.json (package data: the verifier binds the contract from an installed wheel).
// Output is deterministic so the committed files can be checked against a fresh compile.
//
// Usage: node contracts/compile.js [--out DIR]   (--out DIR writes the ABI files into DIR too)
"use strict";

const fs = require("fs");
const path = require("path");
const solc = require("solc");

const CONTRACTS_DIR = __dirname;
const REPO_ROOT = path.resolve(CONTRACTS_DIR, "..");
const NODE_MODULES = path.join(REPO_ROOT, "node_modules");
const CONTRACT_NAMES = ["MintOnDemand", "SaleRules", "PaymentSplit", "NaiveBaseline"];
// contracts compiled from packages, by unit name (their sources are read from node_modules)
const PACKAGE_CONTRACTS = {
  VRFCoordinatorV2_5Mock: "@chainlink/contracts/src/v0.8/vrf/mocks/VRFCoordinatorV2_5Mock.sol",
};
const SHIPPED_ABIS = ["MintOnDemand", "PaymentSplit"];
// MintOnDemand calls SaleRules (a linked library) for its cold sale paths: the errors SaleRules
// reverts with come out of MintOnDemand's calls, so its ABI carries them for clients to decode.
const LINKED_ERRORS = { MintOnDemand: ["SaleRules"] };
// EIP-170: the largest runtime code a chain accepts. A contract over it fails the build here rather
// than its deployment.
const MAX_CODE_SIZE = 24576;
const ABI_DIR = path.join(REPO_ROOT, "chain", "abi");

// evmVersion stays at cancun so the bytecode runs on chains without Prague/Osaka opcodes too (the
// tests run a `--hardfork cancun` anvil for the no-EIP-2935 path). The optimizer is tuned for calls
// (runs: 1000): mint, commitSeeds and publish run thousands of times, deployment once; 1000 rather
// than more keeps MintOnDemand, with its sale phases, under EIP-170's size limit (make gas
// measures what it costs per call).
const SETTINGS = {
  optimizer: { enabled: true, runs: 1000 },
  evmVersion: "cancun",
  outputSelection: {
    "*": { "*": ["abi", "evm.bytecode.object", "evm.bytecode.linkReferences", "evm.deployedBytecode.object"] },
  },
};

function parseArgs(argv) {
  let out = path.join(CONTRACTS_DIR, "build");
  let abiOut = ABI_DIR;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === "--out") {
      if (i + 1 >= argv.length) throw new Error("--out needs a directory");
      out = abiOut = path.resolve(argv[++i]);
    } else if (arg.startsWith("--out=")) {
      out = abiOut = path.resolve(arg.slice("--out=".length));
    } else {
      throw new Error(`unknown argument: ${arg} (usage: node contracts/compile.js [--out DIR])`);
    }
  }
  return { out, abiOut };
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
  const { out, abiOut } = parseArgs(process.argv.slice(2));
  const sources = {};
  for (const name of CONTRACT_NAMES) {
    sources[`${name}.sol`] = { content: fs.readFileSync(path.join(CONTRACTS_DIR, `${name}.sol`), "utf8") };
  }
  for (const unit of Object.values(PACKAGE_CONTRACTS)) {
    sources[unit] = { content: fs.readFileSync(path.join(NODE_MODULES, unit), "utf8") };
  }
  const input = { language: "Solidity", sources, settings: SETTINGS };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const diagnostics = output.errors || [];
  const errors = diagnostics.filter((d) => d.severity === "error");
  // warnings in package sources (Chainlink's) are theirs to fix, not ours to read on every build
  const ours = (d) => !(d.sourceLocation && d.sourceLocation.file.startsWith("@"));
  for (const d of diagnostics.filter((d) => d.severity !== "error" && ours(d))) {
    process.stderr.write(d.formattedMessage || d.message);
  }
  if (errors.length > 0) {
    for (const e of errors) process.stderr.write(e.formattedMessage || e.message);
    process.stderr.write(`compile failed: ${errors.length} error(s)\n`);
    process.exit(1);
  }

  fs.mkdirSync(out, { recursive: true });
  const units = Object.fromEntries(CONTRACT_NAMES.map((name) => [name, `${name}.sol`]));
  Object.assign(units, PACKAGE_CONTRACTS);
  for (const [name, unit] of Object.entries(units)) {
    const compiled = output.contracts && output.contracts[unit] && output.contracts[unit][name];
    if (!compiled) {
      process.stderr.write(`compile failed: no ${name} in solc output\n`);
      process.exit(1);
    }
    const abi = compiled.abi.slice();
    for (const library of LINKED_ERRORS[name] || []) {
      const libraryAbi = output.contracts[`${library}.sol`][library].abi;
      for (const entry of libraryAbi.filter((e) => e.type === "error")) {
        if (!abi.some((e) => e.type === "error" && e.name === entry.name)) abi.push(entry);
      }
    }
    const size = compiled.evm.deployedBytecode.object.length / 2;
    if (size > MAX_CODE_SIZE) {
      process.stderr.write(`compile failed: ${name} is ${size} bytes, over EIP-170's ${MAX_CODE_SIZE}\n`);
      process.exit(1);
    }
    const artifact = {
      contractName: name,
      abi,
      bytecode: "0x" + compiled.evm.bytecode.object,
      deployedBytecode: "0x" + compiled.evm.deployedBytecode.object,
      linkReferences: compiled.evm.bytecode.linkReferences,
      compiler: {
        version: solc.version(),
        settings: { optimizer: SETTINGS.optimizer, evmVersion: SETTINGS.evmVersion },
      },
    };
    const target = path.join(out, `${name}.json`);
    fs.writeFileSync(target, JSON.stringify(artifact, null, 2) + "\n");
    process.stdout.write(`wrote ${path.relative(process.cwd(), target) || target}\n`);
    if (SHIPPED_ABIS.includes(name)) {
      const abiTarget = path.join(abiOut, `${name}.abi.json`);
      fs.mkdirSync(abiOut, { recursive: true });
      fs.writeFileSync(abiTarget, JSON.stringify(abi, null, 2) + "\n");
      process.stdout.write(`wrote ${path.relative(process.cwd(), abiTarget) || abiTarget}\n`);
    }
  }
}

module.exports = { SETTINGS, findImports };

if (require.main === module) {
  try {
    main();
  } catch (err) {
    process.stderr.write(`compile failed: ${err.message}\n`);
    process.exit(1);
  }
}
