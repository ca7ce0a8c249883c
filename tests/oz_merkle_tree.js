// The reference the allowlist tests check sales/merkle.py against: OpenZeppelin's own
// StandardMerkleTree (@openzeppelin/merkle-tree, package.json's devDependencies).
//
// stdin: {"values": [[address, allowance], ...], "dump": <sales.merkle's dump()>,
//         "proofs": [<sales.merkle's proof of each value>, ...]}
// stdout: {"root", "dump" (JSON.stringify of the library's dump), "proofs" (the library's, in
//          the order of values), "loadedRoot" (our dump through StandardMerkleTree.load),
//          "loadedProofs" (proofs from the loaded tree), "verified" (StandardMerkleTree.verify
//          of each of our proofs), "forged" (verify of each value with its allowance plus one)}
'use strict';

const { StandardMerkleTree } = require('@openzeppelin/merkle-tree');

const ENCODING = ['address', 'uint256'];

let input = '';
process.stdin.setEncoding('utf8');
process.stdin.on('data', (chunk) => (input += chunk));
process.stdin.on('end', () => {
  const request = JSON.parse(input);
  const tree = StandardMerkleTree.of(request.values, ENCODING);
  const loaded = StandardMerkleTree.load(request.dump);
  const answer = {
    root: tree.root,
    dump: JSON.stringify(tree.dump()),
    proofs: request.values.map((_, i) => tree.getProof(i)),
    loadedRoot: loaded.root,
    loadedProofs: request.values.map((value) => loaded.getProof(value)),
    verified: request.values.map((value, i) =>
      StandardMerkleTree.verify(tree.root, ENCODING, value, request.proofs[i])),
    forged: request.values.map(([address, allowance], i) =>
      StandardMerkleTree.verify(tree.root, ENCODING,
        [address, (BigInt(allowance) + 1n).toString()], request.proofs[i])),
  };
  process.stdout.write(JSON.stringify(answer));
});
