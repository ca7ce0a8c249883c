// CIDs from ipfs-unixfs-importer (the UnixFS importer Helia uses, with IPIP-499's profiles
// built in), for tests/test_cid_profiles.py: an implementation independent of ipfs/unixfs.py.
//
//   node tests/unixfs_importer.mjs '{"profile": "unixfs-v1-2025", "sizes": [0, 1048577]}'
//   node tests/unixfs_importer.mjs '{"profile": "legacy", "folder": "/tmp/model"}'
//
// Prints one JSON object: {"files": {"<size>": "<cid>"}, "folder": "<cid>"}. File content is
// payload(size), the same bytes tests/test_cid_profiles.py builds: 4096-byte segments, the
// i-th the sha256 of i (8 bytes big-endian) repeated 128 times, cut at `size` bytes.
import { createHash } from 'node:crypto'
import { readdirSync, readFileSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { importer } from 'ipfs-unixfs-importer'

const request = JSON.parse(process.argv[2])
// "legacy" is the v0 profile's chunking and layout with CIDv1 and raw leaves, as
// `ipfs add --cid-version=1` did before IPIP-499
const options = request.profile === 'legacy'
  ? { profile: 'unixfs-v0-2015', cidVersion: 1, rawLeaves: true }
  : { profile: request.profile }
const blockstore = { put: async (cid) => cid } // CIDs only: nothing is kept

function * payload (size) {
  const segment = 4096
  let left = size
  for (let i = 0; left > 0; i++) {
    const index = Buffer.alloc(8)
    index.writeBigUInt64BE(BigInt(i))
    const digest = createHash('sha256').update(index).digest()
    const bytes = Buffer.alloc(segment)
    for (let j = 0; j < segment; j += digest.length) digest.copy(bytes, j)
    yield left >= segment ? bytes : bytes.subarray(0, left)
    left -= segment
  }
}

async function last (source) {
  let entry
  for await (entry of source);
  return entry
}

function * entries (root, below) {
  for (const name of readdirSync(root).sort()) {
    if (name.startsWith('.')) continue
    const path = join(root, name)
    if (statSync(path).isDirectory()) yield * entries(path, `${below}/${name}`)
    else yield { path: `${below}/${name}`, content: readFileSync(path) }
  }
}

const out = { files: {} }
for (const size of request.sizes ?? []) {
  const entry = await last(importer([{ content: payload(size) }], blockstore, options))
  out.files[size] = entry.cid.toString()
}
if (request.folder) {
  const entry = await last(importer(entries(request.folder, 'root'), blockstore, options))
  out.folder = entry.cid.toString()
}
process.stdout.write(JSON.stringify(out))
