// The mint page's sale rules (mintsite/static/mintsite/sale_rules.js) at given chain times, for
// tests/test_contract_sales.py to hold against the contract.
//
// stdin: {"phases": [<mintsite/pages/sale.py's Phase.document()>, ...], "times": [t, ...]}
// stdout: [{"state", "id" (the phase's, or null), "price" (wei as a string, while one is
//          open), "title" (the phase's)}, ...] in the order of times
'use strict';

const path = require('path');
const rules = require(path.join(__dirname, '..', 'mintsite', 'static', 'mintsite', 'sale_rules.js'));

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const phases = request.phases.map(rules.fromDocument);
  const answer = request.times.map((t) => {
    const { state, phase } = rules.findPhase(phases, t);
    return {
      state,
      id: phase ? phase.id : null,
      price: state === 'open' ? rules.priceAt(phase, t).toString() : null,
      title: phase ? rules.phaseTitle(phase) : null,
    };
  });
  process.stdout.write(JSON.stringify(answer));
});
