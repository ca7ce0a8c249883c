// The contract's sale rules for the mint page: which phase is open at a chain time, and what it
// costs then (MintOnDemand's _findPhase and _priceAt), with the names the page gives phases
// (the same as mintsite/pages/sale.py's Phase.name and Phase.title). The page loads it before
// mint.js (window.SaleRules); tests/test_contract_sales.py runs it under node and holds it to
// the contract at each edge of each rule, as it does mintsite/pages/sale.py.
//
// A phase: {id, start, end, stepSeconds, maxPerWallet, price, floorPrice, dropPerStep,
// merkleRoot, label}, times in seconds, prices BigInt wei, merkleRoot lowercase 0x hex.
((root, rules) => {
  if (typeof module === "object" && module.exports) module.exports = rules;
  else root.SaleRules = rules;
})(typeof self !== "undefined" ? self : globalThis, (() => {
  "use strict";

  const ZERO_ROOT = `0x${"0".repeat(64)}`;
  const isAllowlist = (phase) => phase.merkleRoot !== ZERO_ROOT;
  const isAuction = (phase) => phase.stepSeconds !== 0;
  const phaseName = (phase) =>
    isAllowlist(phase) ? (isAuction(phase) ? "Allowlist Dutch auction" : "Allowlist") : isAuction(phase) ? "Dutch auction" : "Public";
  const phaseTitle = (phase) => (phase.label && phase.label !== phaseName(phase) ? `${phase.label} (${phaseName(phase)})` : phaseName(phase));

  // a phase from the page's document of it (mintsite/pages/sale.py's Phase.document: wei as
  // strings, which JSON numbers would round)
  const fromDocument = (p) => ({
    id: p.id, start: p.start, end: p.end, stepSeconds: p.step_seconds, maxPerWallet: p.max_per_wallet,
    price: BigInt(p.price), floorPrice: BigInt(p.floor_price), dropPerStep: BigInt(p.drop_per_step),
    merkleRoot: p.merkle_root.toLowerCase(), label: p.label || "",
  });

  // {state: "unphased" | "open" | "upcoming" | "over", phase}: the open phase at chain time t,
  // or the next one; phases in the contract's order (each starts at or after the last's end)
  function findPhase(phases, t) {
    if (!phases.length) return { state: "unphased", phase: null };
    for (const phase of phases) {
      if (t < phase.start) return { state: "upcoming", phase };
      if (t < phase.end) return { state: "open", phase };
    }
    return { state: "over", phase: null };
  }

  // what price() answers at chain time t while the phase is open
  function priceAt(phase, t) {
    if (!isAuction(phase) || t <= phase.start) return phase.price;
    const drop = BigInt(Math.floor((t - phase.start) / phase.stepSeconds)) * phase.dropPerStep;
    return drop >= phase.price - phase.floorPrice ? phase.floorPrice : phase.price - drop;
  }

  return { ZERO_ROOT, isAllowlist, isAuction, phaseName, phaseTitle, fromDocument, findPhase, priceAt };
})());
