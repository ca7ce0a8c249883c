// The mint page: connect an EIP-1193 wallet, mint, then follow each minted token through the
// pipeline until its image is revealed. Wallets are discovered with EIP-6963 (every injected
// wallet announces itself, and the collector picks one by name), falling back to
// window.ethereum for a wallet that does not announce. ethers v6 (UMD build, vendored at install) talks to the
// wallet; the backend's status API (and its event stream when there is one) reports progress.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("mint-config").textContent);
  const $ = (id) => document.getElementById(id);
  const ui = {
    connect: $("connect"),
    walletChoice: $("wallet-choice"),
    walletChoiceLabel: $("wallet-choice-label"),
    switchChain: $("switch-chain"),
    account: $("account"),
    price: $("price"),
    supply: $("supply"),
    quantity: $("quantity"),
    total: $("total-value"),
    form: $("mint-form"),
    mint: $("mint"),
    messages: $("messages"),
    txStatus: $("tx-status"),
    minted: $("minted"),
    tokens: $("tokens"),
    template: $("token-template"),
  };

  // The steps a collector sees, and where each backend status puts a token among them: the
  // backend renders them into the config from its stage table (mintsite/pages/progress.py).
  const progress = config.progress;
  const STAGES = progress.steps;
  // status -> [first active step, last active step, badge, what is happening]
  const STATUS_STAGE = progress.statuses;
  const STOPPED = progress.stopped;
  const REVEALED = new Set(progress.revealed);
  const TERMINAL = new Set(progress.terminal);

  // EIP-6963: wallets answer "eip6963:requestProvider" with "eip6963:announceProvider"
  // events carrying {info: {uuid, name, icon, rdns}, provider}; usually at once, some later.
  const announced = new Map();
  let started = false; // announcements can come before the page's state exists
  window.addEventListener("eip6963:announceProvider", (event) => {
    const detail = event.detail;
    if (!detail?.info?.uuid || !detail?.provider?.request || announced.has(detail.info.uuid)) return;
    announced.set(detail.info.uuid, detail);
    if (started) renderWalletChoice();
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));

  const state = {
    eth: [...announced.values()][0]?.provider || window.ethereum || null,
    account: null,
    chainOk: false,
    provider: null,
    contract: null,
    priceWei: config.price_wei === null ? null : BigInt(config.price_wei),
    maxSupply: config.max_supply,
    totalSupply: config.total_supply,
    paused: config.paused,
    maxPerTx: config.max_per_tx,
    busy: false,
  };

  // -- messages ---------------------------------------------------------------------------
  function showMessage(kind, text, level = "error", action = null) {
    clearMessage(kind);
    const p = document.createElement("p");
    p.className = `message ${level}`;
    p.dataset.kind = kind;
    p.textContent = text;
    if (action) {
      p.append(" ");
      p.append(action);
    }
    ui.messages.append(p);
  }
  function clearMessage(...kinds) {
    for (const kind of kinds) {
      ui.messages.querySelectorAll(`[data-kind="${kind}"]`).forEach((el) => el.remove());
    }
  }
  const setTxStatus = (text) => { ui.txStatus.textContent = text; };

  // -- amounts and supply -----------------------------------------------------------------
  function formatEther(wei) {
    if (wei === null || wei === undefined) return "?";
    return window.ethers ? window.ethers.formatEther(wei).replace(/\.0$/, "") : String(wei);
  }
  const supplyLeft = () =>
    state.maxSupply === null || state.totalSupply === null ? null : Math.max(state.maxSupply - state.totalSupply, 0);

  function renderFacts() {
    ui.price.textContent = `${formatEther(state.priceWei)} ETH`;
    const left = supplyLeft();
    ui.supply.textContent = left === null ? "?" : `${left} of ${state.maxSupply}`;
    const quantity = Number.parseInt(ui.quantity.value, 10);
    ui.total.textContent = state.priceWei !== null && quantity > 0 ? formatEther(state.priceWei * BigInt(quantity)) : "?";
    if (left === 0) {
      showMessage("sold-out", `Sold out: all ${state.maxSupply} tokens have been minted.`, "warn");
    } else {
      clearMessage("sold-out");
    }
    if (state.paused) {
      showMessage("paused", "Minting is paused by the collection's admin. Come back when it reopens.", "warn");
    } else {
      clearMessage("paused");
    }
    const maximum = Math.min(...[state.maxPerTx || Infinity, left === null ? Infinity : left].filter((n) => n > 0));
    if (Number.isFinite(maximum)) ui.quantity.max = String(maximum);
    updateMintButton();
  }

  function updateMintButton() {
    const left = supplyLeft();
    ui.mint.disabled = state.busy || left === 0 || state.paused || !state.eth || !window.ethers;
    ui.mint.textContent = left === 0 ? "Sold out" : state.paused ? "Paused" : state.busy ? "Minting…" : "Mint";
  }

  // -- wallet -----------------------------------------------------------------------------
  function renderWalletChoice() {
    if (!ui.walletChoice) return;
    const current = ui.walletChoice.value;
    ui.walletChoice.replaceChildren(
      ...[...announced.values()].map(({ info }) => {
        const option = document.createElement("option");
        option.value = info.uuid;
        option.textContent = info.name;
        return option;
      }),
    );
    if (current && announced.has(current)) ui.walletChoice.value = current;
    const several = announced.size > 1;
    ui.walletChoice.hidden = ui.walletChoiceLabel.hidden = !several;
    if (!state.account && announced.size) {
      const first = state.eth === null;
      state.eth = announced.get(ui.walletChoice.value)?.provider || state.eth;
      if (first) {
        // a wallet that announced itself after the page looked for one
        clearMessage("no-wallet");
        ui.connect.disabled = false;
        listenToWallet();
        updateMintButton();
      }
    }
  }

  function chooseWallet() {
    const chosen = announced.get(ui.walletChoice.value);
    if (!chosen || chosen.provider === state.eth) return;
    state.eth = chosen.provider;
    state.account = null;
    state.chainOk = false;
    state.provider = state.contract = null;
    ui.account.textContent = "not connected";
    ui.connect.textContent = "Connect wallet";
    ui.connect.disabled = false;
    listenToWallet();
  }

  const errorCode = (error) =>
    error?.code ?? error?.info?.error?.code ?? error?.error?.code ?? error?.data?.originalError?.code;
  const isRejected = (error) =>
    error?.code === "ACTION_REJECTED" || errorCode(error) === 4001 || error?.info?.error?.code === 4001;

  function checkEnvironment() {
    if (!state.eth) {
      ui.connect.disabled = true;
      showMessage(
        "no-wallet",
        "No wallet found. Install a browser wallet that supports Ethereum (such as MetaMask, Rabby or Coinbase Wallet), then reload this page.",
      );
      return false;
    }
    if (!window.ethers) {
      ui.connect.disabled = true;
      showMessage("no-library", "The wallet library did not load (static/mintsite/vendor/ethers.umd.min.js). The operator should run `make install`.");
      return false;
    }
    return true;
  }

  async function connect() {
    clearMessage("connect-rejected", "connect-failed");
    let accounts;
    try {
      accounts = await state.eth.request({ method: "eth_requestAccounts" });
    } catch (error) {
      if (isRejected(error)) {
        showMessage("connect-rejected", "You declined the connection request in your wallet. Click “Connect wallet” to try again.", "warn");
      } else if (errorCode(error) === -32002) {
        showMessage("connect-failed", "Your wallet already has a connection request open: finish it in the wallet.", "warn");
      } else {
        showMessage("connect-failed", `The wallet could not connect: ${error?.message || error}`);
      }
      return;
    }
    setAccount(accounts);
    await checkChain();
  }

  function setAccount(accounts) {
    state.account = accounts && accounts.length ? accounts[0] : null;
    ui.account.textContent = state.account || "not connected";
    ui.account.classList.toggle("mono", Boolean(state.account));
    ui.connect.textContent = state.account ? "Connected" : "Connect wallet";
    ui.connect.disabled = Boolean(state.account);
  }

  async function checkChain() {
    if (!state.account) return;
    const chainId = Number.parseInt(await state.eth.request({ method: "eth_chainId" }), 16);
    state.chainOk = chainId === config.chain.id;
    ui.switchChain.hidden = state.chainOk;
    if (!state.chainOk) {
      state.provider = state.contract = null;
      showMessage(
        "wrong-chain",
        `Your wallet is on chain ${chainId}, but this collection lives on ${config.chain.name} (chain ${config.chain.id}). Switch networks to mint.`,
        "warn",
      );
      updateMintButton();
      return;
    }
    clearMessage("wrong-chain", "switch-failed");
    // A new provider per chain: ethers refuses to reuse one across a network change. No
    // response cache: a balance checked again right after a top-up must be read afresh.
    state.provider = new window.ethers.BrowserProvider(state.eth, config.chain.id, { pollingInterval: 1000, cacheTimeout: -1 });
    const signer = await state.provider.getSigner(state.account);
    state.contract = new window.ethers.Contract(config.contract, config.abi, signer);
    await refreshFromChain();
  }

  async function switchChain() {
    clearMessage("switch-failed");
    const chainId = config.chain.hex_id;
    try {
      await state.eth.request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
    } catch (error) {
      if (errorCode(error) === 4902) {
        if (!config.chain.rpc_urls.length) {
          showMessage("switch-failed", `Your wallet does not know ${config.chain.name} (chain ${config.chain.id}). Add it in your wallet, then try again.`);
          return;
        }
        try {
          await state.eth.request({
            method: "wallet_addEthereumChain",
            params: [{
              chainId,
              chainName: config.chain.name,
              rpcUrls: config.chain.rpc_urls,
              nativeCurrency: { name: "Ether", symbol: "ETH", decimals: 18 },
            }],
          });
        } catch (addError) {
          const why = isRejected(addError) ? "you declined it" : addError?.message || addError;
          showMessage("switch-failed", `${config.chain.name} could not be added to your wallet: ${why}.`, "warn");
          return;
        }
      } else if (isRejected(error)) {
        showMessage("switch-failed", `You declined the switch to ${config.chain.name}. Switch networks to mint.`, "warn");
        return;
      } else {
        showMessage("switch-failed", `The wallet could not switch to ${config.chain.name}: ${error?.message || error}`);
        return;
      }
    }
    await checkChain();
  }

  async function refreshFromChain() {
    if (!state.contract) return;
    try {
      const [price, maxSupply, totalSupply] = await Promise.all([
        state.contract.price(),
        state.contract.maxSupply(),
        state.contract.totalSupply(),
      ]);
      state.priceWei = price;
      state.maxSupply = Number(maxSupply);
      state.totalSupply = Number(totalSupply);
      ui.supply.dataset.source = "chain"; // until now it showed the server's figure from page load
      try {
        state.paused = await state.contract.paused();
      } catch {
        state.paused = false; // a contract without paused()
      }
      clearMessage("rpc");
    } catch (error) {
      showMessage("rpc", `The contract could not be read through your wallet: ${error?.shortMessage || error?.message || error}`);
    }
    renderFacts();
  }

  // -- minting ----------------------------------------------------------------------------
  function describeMintError(error) {
    if (isRejected(error)) return ["rejected", "You rejected the transaction in your wallet; nothing was sent and nothing was charged.", "warn"];
    const text = `${error?.shortMessage || ""} ${error?.message || ""} ${error?.info?.error?.message || ""}`;
    if (error?.code === "INSUFFICIENT_FUNDS" || /insufficient funds/i.test(text)) {
      return ["insufficient-funds", "Insufficient funds: your account cannot pay for this mint and its gas. Add ETH to it or mint fewer tokens.", "error"];
    }
    const revert = error?.revert;
    if (revert) {
      const args = (revert.args || []).map(String);
      switch (revert.name) {
        case "SoldOut":
          return args[1] === "0"
            ? ["sold-out", `Sold out: all ${state.maxSupply ?? ""} tokens have been minted.`.replace("all  ", "all "), "warn"]
            : ["sold-out", `Only ${args[1]} token${args[1] === "1" ? " is" : "s are"} left; you asked for ${args[0]}.`, "warn"];
        case "EnforcedPause":
          return ["paused", "Minting is paused by the collection's admin.", "warn"];
        case "TooManyPerTransaction":
          return ["too-many", `At most ${args[1]} tokens per transaction (you asked for ${args[0]}).`, "warn"];
        case "WalletCapExceeded":
          return ["wallet-cap", `This wallet may mint ${args[1]} more token${args[1] === "1" ? "" : "s"}; you asked for ${args[0]}.`, "warn"];
        case "ConfigNotFrozen":
          return ["not-open", "Minting has not opened yet: the collection's config is not frozen on-chain.", "warn"];
        case "WrongPayment":
          return ["wrong-payment", "The price changed while you were minting; reload the page and try again.", "warn"];
        default:
          return ["reverted", `The contract refused the mint: ${revert.name}(${args.join(", ")}).`, "error"];
      }
    }
    return ["mint-failed", `The mint failed: ${error?.shortMessage || error?.message || error}`, "error"];
  }

  async function mint(event) {
    event.preventDefault();
    for (const kind of ["rejected", "insufficient-funds", "too-many", "wallet-cap", "not-open", "wrong-payment", "reverted", "mint-failed", "quantity"]) clearMessage(kind);
    if (!state.account) {
      await connect();
      if (!state.account) return;
    }
    if (!state.chainOk) {
      showMessage("wrong-chain", `Switch your wallet to ${config.chain.name} (chain ${config.chain.id}) to mint.`, "warn");
      return;
    }
    if (state.priceWei === null) {
      showMessage("rpc", "The price could not be read from the contract, so nothing can be minted yet. Try again in a moment.");
      return;
    }
    const quantity = Number.parseInt(ui.quantity.value, 10);
    const maximum = Number(ui.quantity.max) || Infinity;
    if (!Number.isInteger(quantity) || quantity < 1 || quantity > maximum) {
      showMessage("quantity", `Quantity must be a whole number from 1 to ${Number.isFinite(maximum) ? maximum : "the supply left"}; got “${ui.quantity.value}”.`, "warn");
      ui.quantity.focus();
      return;
    }
    const value = state.priceWei * BigInt(quantity);
    state.busy = true;
    updateMintButton();
    try {
      const balance = await state.provider.getBalance(state.account);
      if (balance < value) {
        showMessage(
          "insufficient-funds",
          `Insufficient funds: ${quantity === 1 ? "1 token costs" : `${quantity} tokens cost`} ${formatEther(value)} ETH plus gas, and your account holds ${formatEther(balance)} ETH.`,
        );
        return;
      }
      setTxStatus("Confirm the transaction in your wallet…");
      const tx = await state.contract.mint(quantity, { value });
      setTxStatus(`Transaction ${tx.hash} sent; waiting for it to be mined…`);
      const receipt = await tx.wait();
      if (!receipt || receipt.status !== 1) {
        showMessage("mint-failed", `The mint transaction ${tx.hash} reverted.`);
        return;
      }
      const ids = mintedTokenIds(receipt);
      setTxStatus(`Minted token${ids.length > 1 ? "s" : ""} ${ids.map((id) => `#${id}`).join(", ")} in block ${receipt.blockNumber}.`);
      for (const id of ids) followToken(id);
    } catch (error) {
      const [kind, text, level] = describeMintError(error);
      showMessage(kind, text, level);
      setTxStatus("");
    } finally {
      state.busy = false;
      await refreshFromChain();
    }
  }

  function mintedTokenIds(receipt) {
    const iface = state.contract.interface;
    const ids = [];
    for (const log of receipt.logs) {
      if (log.address.toLowerCase() !== config.contract.toLowerCase()) continue;
      let parsed;
      try {
        parsed = iface.parseLog(log);
      } catch {
        continue;
      }
      if (parsed?.name === "Transfer" && BigInt(parsed.args[0]) === 0n) ids.push(parsed.args[2].toString());
    }
    return ids;
  }

  // -- following a token ------------------------------------------------------------------
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

  function tokenCard(tokenId) {
    const node = ui.template.content.firstElementChild.cloneNode(true);
    node.id = `token-${tokenId}`;
    node.dataset.tokenId = tokenId;
    node.querySelector(".token-title").textContent = `${config.name} #${tokenId}`;
    const list = node.querySelector(".stages");
    STAGES.forEach((label, index) => {
      const li = document.createElement("li");
      li.textContent = label;
      li.dataset.stage = String(index);
      list.append(li);
    });
    node.querySelector(".bar").setAttribute("aria-label", `Progress of token #${tokenId}`);
    ui.minted.hidden = false;
    ui.tokens.append(node);
    return { node, tokenId, status: undefined, revealed: false };
  }

  function showStatus(card, doc) {
    const status = doc ? doc.status : null;
    if (status === card.status && !(doc && REVEALED.has(status) && !card.revealed)) return;
    card.status = status;
    const node = card.node;
    const badge = node.querySelector(".badge");
    const text = node.querySelector(".stage-text");
    const stages = node.querySelectorAll(".stages li");
    if (status in STOPPED) {
      node.classList.add("stopped");
      node.dataset.status = status;
      badge.textContent = status.replace("_", " ").toLowerCase();
      text.textContent = `${STOPPED[status]}${doc.failure_reason ? ` ${doc.failure_reason}` : ""}`;
      addHistory(card, status.replace("_", " ").toLowerCase());
      return;
    }
    const [first, last, label, words] = STATUS_STAGE[status] || [0, 0, String(status).toLowerCase(), `Status ${status}.`];
    stages.forEach((li, index) => {
      li.className = index < first ? "done" : index <= last ? "active" : "";
      if (index >= first && index <= last) li.setAttribute("aria-current", "step");
      else li.removeAttribute("aria-current");
    });
    const percent = Math.round((first / STAGES.length) * 100);
    node.querySelector(".bar").value = percent;
    badge.textContent = label;
    node.dataset.status = status || "UNRECORDED";
    const attempt = status === "RENDERING" && doc.attempt > 0 ? ` Attempt ${doc.attempt + 1}: the previous render did not pass the check.` : "";
    text.textContent = `${words}${attempt}`;
    addHistory(card, label);
    if (doc && REVEALED.has(status) && !card.revealed && doc.image_url) reveal(card, doc);
  }

  function addHistory(card, label) {
    const list = card.node.querySelector(".history-list");
    if (list.lastElementChild?.dataset.label === label) return;
    const li = document.createElement("li");
    li.dataset.label = label;
    li.textContent = `${new Date().toLocaleTimeString()} ${label}`;
    list.append(li);
  }

  async function reveal(card, doc) {
    card.revealed = true;
    const node = card.node;
    const img = node.querySelector(".token-image");
    img.src = doc.image_url;
    img.alt = `${config.name} #${card.tokenId}`;
    node.querySelector(".token-link").href = `${config.token_page}${card.tokenId}/`;
    node.querySelector(".reveal").hidden = false;
    const traits = node.querySelector(".traits");
    try {
      const response = await fetch(doc.metadata_url, { headers: { Accept: "application/json" } });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      const metadata = await response.json();
      const attributes = metadata.attributes || [];
      // each option's probability: the metadata's rarity, keyed by trait_type (tokens published
      // before issue 19 carry it inside each attribute)
      const figures = metadata.rarity && typeof metadata.rarity === "object" ? metadata.rarity : {};
      traits.replaceChildren(
        ...(attributes.length
          ? attributes.map((a) => {
              const li = document.createElement("li");
              const p = Object.hasOwn(figures, a.trait_type) ? figures[a.trait_type] : a.rarity;
              const rarity = typeof p === "number" ? ` (rarity ${+(p * 100).toFixed(2)}%)` : "";
              // trait names and values are the collection's own text: never parsed as HTML
              const name = document.createElement("strong");
              name.textContent = a.trait_type;
              const value = document.createElement("span");
              value.textContent = `${a.value}${rarity}`;
              li.append(name, ": ", value);
              return li;
            })
          : [Object.assign(document.createElement("li"), { textContent: "This collection has no traits." })]),
      );
    } catch (error) {
      traits.replaceChildren(Object.assign(document.createElement("li"), {
        textContent: `The metadata could not be loaded from ${doc.metadata_url}: ${error.message}`,
      }));
    }
  }

  async function followToken(tokenId) {
    const card = tokenCard(tokenId);
    showStatus(card, null);
    const url = `${config.token_api}${tokenId}/`;
    let etag = null;
    let doc = null;
    let stream = "untried"; // then "open" while one works, or "unavailable": poll
    const fetchDocument = async () => {
      const headers = { Accept: "application/json" };
      if (etag) headers["If-None-Match"] = etag;
      const response = await fetch(url, { headers, cache: "no-store" });
      if (response.status === 304) return doc;
      if (response.status === 404) return null;
      if (!response.ok) throw new Error(`the status API answered HTTP ${response.status}`);
      etag = response.headers.get("ETag");
      return response.json();
    };
    const text = card.node.querySelector(".stage-text");
    for (;;) {
      try {
        doc = await fetchDocument();
        text.classList.remove("stale");
      } catch (error) {
        text.classList.add("stale");
        text.textContent = `Cannot reach the backend (${error.message}); retrying…`;
        card.status = undefined;
      }
      if (doc) {
        showStatus(card, doc);
        if (TERMINAL.has(doc.status)) return;
        if (stream !== "unavailable") {
          const outcome = await followStream(`${url}stream/`, card, async (payload) => {
            doc = isTokenDocument(payload) ? payload : await fetchDocument();
            if (doc) showStatus(card, doc);
            return Boolean(doc && TERMINAL.has(doc.status));
          });
          if (outcome === "finished") return;
          stream = outcome === "unavailable" ? "unavailable" : "open";
          card.node.dataset.transport = stream === "open" ? "stream" : "polling";
          // the stream ended (its lifetime, a proxy): catch up, then open a new one
        }
      } else if (doc === null) {
        showStatus(card, null);
      }
      await sleep(config.poll_interval_ms);
    }
  }

  const isTokenDocument = (payload) =>
    payload && typeof payload === "object" && "token_id" in payload && "status" in payload &&
    (!REVEALED.has(payload.status) || "image_url" in payload);

  // Server-Sent Events read over fetch, so a missing endpoint (404, or anything that is not
  // text/event-stream) is seen at once and the caller falls back to polling. Resolves to
  // "finished" when onEvent reported a terminal state, "ended" when a working stream closed,
  // "unavailable" when there is no stream.
  async function followStream(url, card, onEvent) {
    const controller = new AbortController();
    let response;
    try {
      response = await fetch(url, { headers: { Accept: "text/event-stream" }, cache: "no-store", signal: controller.signal });
    } catch {
      return "unavailable";
    }
    const type = response.headers.get("Content-Type") || "";
    if (response.status !== 200 || !type.startsWith("text/event-stream") || !response.body) {
      controller.abort();
      return "unavailable";
    }
    card.node.dataset.transport = "stream";
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    let data = [];
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) return "ended";
        buffer += value;
        const lines = buffer.split(/\r\n|\r|\n/);
        buffer = lines.pop();
        for (const line of lines) {
          if (line === "") {
            if (!data.length) continue;
            let payload = null;
            try {
              payload = JSON.parse(data.join("\n"));
            } catch {
              payload = { text: data.join("\n") };
            }
            data = [];
            if (await onEvent(payload)) {
              controller.abort();
              return "finished";
            }
          } else if (line.startsWith("data:")) {
            data.push(line.slice(5).replace(/^ /, ""));
          }
        }
      }
    } catch {
      return "ended";
    }
  }

  // -- start ------------------------------------------------------------------------------
  ui.quantity.addEventListener("input", renderFacts);
  ui.form.addEventListener("submit", mint);
  ui.connect.addEventListener("click", connect);
  ui.switchChain.addEventListener("click", switchChain);
  ui.walletChoice?.addEventListener("change", chooseWallet);

  function listenToWallet() {
    const eth = state.eth;
    // events of a wallet the collector has since switched away from are ignored
    eth.on?.("chainChanged", () => { if (state.eth === eth) checkChain(); });
    eth.on?.("accountsChanged", (accounts) => {
      if (state.eth !== eth) return;
      setAccount(accounts);
      checkChain();
    });
    // Already authorised by the wallet: show the account without a prompt.
    eth.request({ method: "eth_accounts" }).then((accounts) => {
      if (state.eth === eth && accounts && accounts.length) {
        setAccount(accounts);
        checkChain();
      }
    }).catch(() => {});
  }

  started = true;
  renderWalletChoice();
  if (checkEnvironment()) listenToWallet();
  renderFacts();
})();
