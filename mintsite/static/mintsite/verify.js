// The token page's "Check it yourself" panel: recomputes what the page claims from public data
// alone, in the visitor's browser. It talks only to the chain, through the RPC URL the visitor
// chooses, and to the IPFS gateway the visitor chooses; never to this server's API. Each step is
// shown with what it compared. ethers v6 (vendored at install) reads the contract and computes
// keccak256; WebCrypto computes sha256.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("verify-config").textContent);
  const $ = (id) => document.getElementById(id);
  const ABI = [
    "function mintBlockOf(uint256) view returns (uint256)",
    "function seedBlockOf(uint256) view returns (uint256)",
    "function vrfCoordinator() view returns (address)",
    "function vrfRequestOf(uint256) view returns (uint256, uint256)",
    "function seedOf(uint256) view returns (bytes32)",
    "function metadataDigestOf(uint256) view returns (bytes32)",
    "function tokenURI(uint256) view returns (string)",
  ];
  // A file up to one chunk (Kubo's default 256 KiB) is one raw block: its CID is the digest's.
  const ONE_CHUNK = 262144;
  const BASE32 = "abcdefghijklmnopqrstuvwxyz234567";

  function base32(bytes) {
    let out = "";
    let buffer = 0;
    let bits = 0;
    for (const byte of bytes) {
      buffer = (buffer << 8) | byte;
      bits += 8;
      while (bits >= 5) {
        out += BASE32[(buffer >>> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    if (bits > 0) out += BASE32[(buffer << (5 - bits)) & 31];
    return out;
  }

  // CIDv1, raw codec (0x55), sha2-256 multihash, base32 ("b" prefix): what the contract's
  // tokenURI and Kubo's `ipfs add --cid-version=1 --raw-leaves` give for one chunk.
  const rawCid = (digest) => "b" + base32(Uint8Array.of(0x01, 0x55, 0x12, 0x20, ...digest));
  const hex = (bytes) => "0x" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  const sha256 = async (bytes) => new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));

  function step(name, ok, detail) {
    const li = document.createElement("li");
    li.dataset.step = name;
    li.className = ok === null ? "skipped" : ok ? "ok" : "bad";
    const label = document.createElement("strong");
    label.textContent = `${name}: ${ok === null ? "not checked" : ok ? "pass" : "FAIL"}`;
    li.append(label, ` ${detail}`);
    $("verify-steps").append(li);
    return ok;
  }

  async function fetchBytes(gateway, uri) {
    const cid = uri.replace(/^ipfs:\/\//, "");
    const response = await fetch(`${gateway}/${cid}`, { cache: "no-store" });
    if (!response.ok) throw new Error(`${gateway}/${cid} answered ${response.status}`);
    return { cid, bytes: new Uint8Array(await response.arrayBuffer()) };
  }

  async function check() {
    const id = BigInt(config.token_id);
    const rpc = $("verify-rpc").value.trim();
    const gateway = $("verify-gateway").value.trim().replace(/\/+$/, "");
    // staticNetwork: ethers does not probe the RPC in the background (an unreachable URL would
    // keep it retrying); the chain id is asked once, below, and a wrong one stops the check
    const provider = new window.ethers.JsonRpcProvider(rpc, Number(config.chain_id), {
      staticNetwork: true,
      batchMaxCount: 1,
    });
    const contract = new window.ethers.Contract(config.contract, ABI, provider);

    const served = BigInt(await provider.send("eth_chainId", []));
    if (!step("chain", served === BigInt(config.chain_id),
      `the RPC serves chain ${served}; the collection is on chain ${config.chain_id}`)) return;

    const mintBlock = await contract.mintBlockOf(id);
    const block = await provider.getBlock(mintBlock);
    // a collection with a seed delay seeds from a later block (contracts older than seed
    // delays have no seedBlockOf: their seed block is the mint block)
    const seedBlock = await contract.seedBlockOf(id).catch(() => mintBlock);
    const seedHash = seedBlock === mintBlock ? block.hash : (await provider.getBlock(seedBlock))?.hash;
    const seed = await contract.seedOf(id);
    // a collection seeded by Chainlink VRF: the seed is keccak256(random word, id)
    const coordinator = await contract.vrfCoordinator().catch(() => window.ethers.ZeroAddress);
    if (coordinator !== window.ethers.ZeroAddress) {
      const [requestId, word] = await contract.vrfRequestOf(id);
      const fromWord = window.ethers.solidityPackedKeccak256(["uint256", "uint256"], [word, id]);
      step("seed", word !== 0n && seed === fromWord,
        `keccak256(random word of VRF request ${requestId} from coordinator ${coordinator}, ${id}) = ${fromWord}; the contract holds ${seed} (mintverify also checks the coordinator's fulfilment event)`);
    } else {
      const recomputed = seedHash
        ? window.ethers.solidityPackedKeccak256(["bytes32", "uint256"], [seedHash, id])
        : "(the seed block is not on the chain yet)";
      const which = seedBlock === mintBlock ? `mint block ${mintBlock}` : `block ${seedBlock} (mint block ${mintBlock} + ${seedBlock - mintBlock})`;
      step("seed", seed === recomputed,
        `keccak256(hash of ${which}, ${id}) = ${recomputed}; the contract holds ${seed}`);
    }

    const digest = window.ethers.getBytes(await contract.metadataDigestOf(id));
    if (digest.every((b) => b === 0)) {
      step("metadata", false, "not published: the contract holds no metadata digest for this token");
      return;
    }
    const uri = await contract.tokenURI(id);
    const expectedUri = `ipfs://${rawCid(digest)}`;
    step("token URI", uri === expectedUri, `tokenURI ${uri}; the CID of the on-chain digest is ${expectedUri}`);
    const metadata = await fetchBytes(gateway, expectedUri);
    const metadataHash = await sha256(metadata.bytes);
    if (!step("metadata", hex(metadataHash) === hex(digest),
      `the gateway's ${metadata.bytes.length} bytes hash to ${hex(metadataHash)}; the chain holds ${hex(digest)}`)) return;

    const document_ = JSON.parse(new TextDecoder().decode(metadata.bytes));
    const provenance = document_.provenance || {};
    step("provenance", provenance.seed === seed && Number(provenance.mint_block_number) === Number(mintBlock)
      && String(provenance.mint_block_hash).toLowerCase() === block.hash.toLowerCase()
      && (!provenance.seed_block_hash || String(provenance.seed_block_hash).toLowerCase() === String(seedHash).toLowerCase()),
      `the metadata records seed ${provenance.seed}, mint block ${provenance.mint_block_number}`);

    const image = await fetchBytes(gateway, String(document_.image || ""));
    if (image.bytes.length > ONE_CHUNK) {
      step("image", null, `${image.bytes.length} bytes is more than one chunk: its CID needs the UnixFS tree (use mintverify)`);
      return;
    }
    const imageCid = rawCid(await sha256(image.bytes));
    step("image", imageCid === image.cid, `the gateway's ${image.bytes.length} bytes have CID ${imageCid}; the metadata names ${image.cid}`);
  }

  $("verify-form").addEventListener("submit", async (event) => {
    event.preventDefault();
    $("verify-steps").replaceChildren();
    $("verify-summary").textContent = "Checking…";
    $("verify-run").disabled = true;
    try {
      await check();
    } catch (error) {
      step("error", false, error?.shortMessage || error?.message || String(error));
    } finally {
      const steps = [...$("verify-steps").children];
      const failed = steps.filter((li) => li.className === "bad").length;
      const passed = steps.filter((li) => li.className === "ok").length;
      $("verify-summary").textContent = failed
        ? `${failed} check(s) failed: do not trust what this page says about the token.`
        : `${passed} checks passed, from the chain and the gateway alone.`;
      $("verify-summary").className = failed ? "message error" : "ok";
      $("verify-run").disabled = false;
    }
  });
})();
