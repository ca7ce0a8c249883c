// The mint page: connect an EIP-1193 wallet, mint, then follow each minted token through the
// pipeline until its image is revealed. With sale phases (issue 19) it names the open phase and
// its price (a Dutch auction's, live), tells the connected wallet whether it is on the phase's
// allowlist (fetching its proof from the API) and how many it may still mint, offers auction
// refunds, and lists the wallet's tokens. Wallets are discovered with EIP-6963 (every injected
// wallet announces itself, and the collector picks one by name), falling back to
// window.ethereum for a wallet that does not announce. ethers v6 (UMD build, vendored at install) talks to the
// wallet; the backend's status API (and its event stream when there is one) reports progress.
(() => {
  "use strict";

  const config = JSON.parse(document.getElementById("mint-config").textContent);
  // the contract's sale rules (sale_rules.js, loaded before this)
  const { isAllowlist, isAuction, phaseTitle, priceAt, fromDocument: phaseFromConfig } = window.SaleRules;
  const $ = (id) => document.getElementById(id);
  const ui = {
    connect: $("connect"),
    walletChoice: $("wallet-choice"),
    walletChoiceLabel: $("wallet-choice-label"),
    switchChain: $("switch-chain"),
    account: $("account"),
    phase: $("phase"),
    price: $("price"),
    priceDetail: $("price-detail"),
    phaseCap: $("phase-cap"),
    eligibility: $("eligibility"),
    auctionNote: $("auction-note"),
    refunds: $("refunds"),
    refundList: $("refund-list"),
    owned: $("owned"),
    ownedList: $("owned-list"),
    ownedEmpty: $("owned-empty"),
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
    reservedLeft: config.reserved_left || 0, // the creator's reserve not yet airdropped: not for sale
    paused: config.paused,
    maxPerTx: config.max_per_tx,
    busy: false,
    // the sale: the scheduled phases, and the chain's clock as an offset from this computer's
    // (the latest block's time when last read, plus the seconds since)
    phases: (config.sale?.phases || []).map(phaseFromConfig),
    clockOffset: config.sale ? config.sale.chain_time - Date.now() / 1000 : 0,
    saleRemaining: null,
    maxPerWallet: 0, // the contract-wide cap on what one wallet mints (0: none)
    standing: null, // the connected wallet in the sale as it stood when read (refreshWallet)
    refunds: [], // [{phase, wei, ended}]: auctions where it paid above the clearing price
    shownPhase: undefined, // the sale state the page shows, to notice a phase opening or closing
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
  // what a collector can still buy: the contract's saleRemaining()
  const supplyLeft = () =>
    state.maxSupply === null || state.totalSupply === null
      ? null
      : Math.max(state.maxSupply - state.totalSupply - state.reservedLeft, 0);
  const soldOutText = () =>
    state.reservedLeft
      ? `Sold out: every token for sale has been minted (${state.reservedLeft} kept in the creator's reserve).`
      : `Sold out: all ${state.maxSupply ?? ""} tokens have been minted.`.replace("all  ", "all ");

  // -- the sale: phases, their prices, the wallet's standing -----------------------------
  // The rules are the contract's (_findPhase, _priceAt: sale_rules.js), so the page can say
  // every second what price() would answer without asking the chain that often.

  // the manager's names, from the server, for the phases exactly as it saw them on-chain
  const sameFields = (a, b) =>
    a.start === b.start && a.end === b.end && a.stepSeconds === b.stepSeconds && a.maxPerWallet === b.maxPerWallet &&
    a.price === b.price && a.floorPrice === b.floorPrice && a.dropPerStep === b.dropPerStep && a.merkleRoot === b.merkleRoot;
  const namedPhases = (config.sale?.phases || []).map(phaseFromConfig).filter((p) => p.label);
  function phaseFromChain(id, p) {
    const phase = {
      id, start: Number(p.start), end: Number(p.end), stepSeconds: Number(p.stepSeconds), maxPerWallet: Number(p.maxPerWallet),
      price: BigInt(p.price), floorPrice: BigInt(p.floorPrice), dropPerStep: BigInt(p.dropPerStep),
      merkleRoot: String(p.merkleRoot).toLowerCase(), label: "",
    };
    const named = namedPhases.find((n) => n.id === id && sameFields(n, phase));
    return named ? { ...phase, label: named.label } : phase;
  }
  const chainNow = () => Math.floor(Date.now() / 1000 + state.clockOffset);
  const localTime = (seconds) => new Date(seconds * 1000).toLocaleString();
  const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;

  // {state: "unphased" | "open" | "upcoming" | "over", phase}: the open phase, or the next one
  const findPhase = (t = chainNow()) => window.SaleRules.findPhase(state.phases, t);
  const saleKey = ({ state: s, phase }) => `${s}:${phase ? phase.id : ""}`;

  function duration(seconds) {
    const s = Math.max(0, Math.ceil(seconds));
    const h = Math.floor(s / 3600);
    const m = Math.floor((s % 3600) / 60);
    const pad = (n) => String(n).padStart(2, "0");
    return h ? `${h}:${pad(m)}:${pad(s % 60)}` : `${m}:${pad(s % 60)}`;
  }

  // What a mint costs per token now: the open phase's price, the next phase's opening price,
  // none once the sale is over, or the base price when no phase is scheduled.
  function currentPrice(sale, now) {
    if (sale.state === "open") return priceAt(sale.phase, now);
    if (sale.state === "upcoming") return sale.phase.price;
    if (sale.state === "over") return null;
    return state.priceWei;
  }

  function priceDetail(sale, now) {
    const phase = sale.phase;
    if (sale.state === "upcoming") return `from ${localTime(phase.start)}`;
    if (sale.state !== "open") return "";
    if (!isAuction(phase)) return `until ${localTime(phase.end)}`;
    const price = priceAt(phase, now);
    const next = phase.start + phase.stepSeconds * (Math.floor(Math.max(now - phase.start, 0) / phase.stepSeconds) + 1);
    if (price <= phase.floorPrice || next >= phase.end) {
      return `stays at ${formatEther(price)} ETH${price <= phase.floorPrice ? " (the floor)" : ""} until the auction ends at ${localTime(phase.end)}`;
    }
    return `falls to ${formatEther(priceAt(phase, next))} ETH in ${duration(next - now)}; floor ${formatEther(phase.floorPrice)} ETH`;
  }

  // the open phase's per-wallet limit in words (as the view's _phase_cap)
  function capText(phase) {
    const cap = phase.maxPerWallet;
    if (isAllowlist(phase)) return cap ? `each wallet's allowance, at most ${cap}` : "each wallet's allowance";
    return cap ? `${cap} per wallet` : "no limit";
  }

  // How many more the connected wallet may mint now (Infinity: no limit), or null when its
  // standing has not been read for the sale's present state.
  function walletRemaining() {
    const standing = state.standing;
    const sale = findPhase();
    if (!standing || standing.account !== state.account || standing.key !== saleKey(sale)) return null;
    let left = Infinity;
    if (sale.state === "open") {
      let cap = sale.phase.maxPerWallet || Infinity;
      if (isAllowlist(sale.phase)) {
        if (standing.allowlist?.status !== "listed") return 0;
        cap = Math.min(cap, standing.allowlist.allowance);
      }
      left = Math.max(cap - standing.minted, 0);
    }
    if (state.maxPerWallet) left = Math.min(left, Math.max(state.maxPerWallet - standing.numberMinted, 0));
    return left;
  }

  function eligibilityText(sale) {
    const standing = state.standing;
    const left = walletRemaining();
    if (left === null) return standing?.error ? `What this wallet may mint could not be read: ${standing.error}` : "Checking…";
    if (sale.state === "upcoming") return `The sale has not opened yet; it opens at ${localTime(sale.phase.start)}.`;
    if (sale.state === "over") return "The sale is over.";
    const listed = standing.allowlist;
    if (sale.state === "open" && isAllowlist(sale.phase)) {
      if (listed.status === "absent") return "This wallet is not on the allowlist for this phase.";
      if (listed.status === "unpublished") {
        return "This phase's allowlist is not published on this site, so this wallet's proof cannot be found here.";
      }
      const on = `On the allowlist “${listed.list}” (allowance ${listed.allowance})`;
      return left ? `${on}: may mint ${left} more in this phase.` : `${on}: it has minted all it may in this phase.`;
    }
    if (left === Infinity) return sale.state === "open" ? "No limit per wallet in this phase." : "No limit per wallet.";
    if (!left) return sale.state === "open" ? "This wallet has minted all it may in this phase." : "This wallet has minted all it may.";
    return `May mint ${left} more${sale.state === "open" ? " in this phase" : ""}.`;
  }

  // Everything that moves with the clock; run every second.
  function renderSale() {
    const now = chainNow();
    const sale = findPhase(now);
    const phase = sale.phase;
    ui.phase.dataset.state = sale.state;
    ui.phase.textContent =
      sale.state === "open" ? phaseTitle(phase)
        : sale.state === "upcoming" ? `Sale not open — opens ${localTime(phase.start)}`
          : sale.state === "over" ? "Sale over" : "Public";
    const price = currentPrice(sale, now);
    ui.price.textContent = price === null ? "—" : `${formatEther(price)} ETH`;
    const detail = priceDetail(sale, now);
    ui.priceDetail.textContent = detail;
    ui.priceDetail.hidden = !detail;
    const open = sale.state === "open" ? phase : null;
    ui.phaseCap.textContent = open ? capText(open) : "";
    ui.phaseCap.parentElement.hidden = !open;
    ui.auctionNote.hidden = !(open && isAuction(open));
    ui.eligibility.textContent = state.account ? eligibilityText(sale) : "";
    ui.eligibility.parentElement.hidden = !state.account;
    const quantity = Number.parseInt(ui.quantity.value, 10);
    ui.total.textContent = price !== null && quantity > 0 ? formatEther(price * BigInt(quantity)) : "?";
    updateMintButton();
    const key = saleKey(sale);
    if (state.shownPhase !== undefined && key !== state.shownPhase) refreshWallet(); // a phase opened or closed
    state.shownPhase = key;
  }

  function renderFacts() {
    renderSale();
    const left = supplyLeft();
    ui.supply.textContent = left === null ? "?" : `${left} of ${state.maxSupply}`;
    if (left === 0) {
      showMessage("sold-out", soldOutText(), "warn");
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
    const sale = findPhase().state;
    const closed = sale === "upcoming" || sale === "over";
    ui.mint.disabled = state.busy || left === 0 || state.paused || closed || !state.eth || !window.ethers;
    ui.mint.textContent =
      left === 0 ? "Sold out" : state.paused ? "Paused" : sale === "upcoming" ? "Not open yet"
        : sale === "over" ? "Sale over" : state.busy ? "Minting…" : "Mint";
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
    state.standing = null;
    state.refunds = [];
    renderRefunds();
    if (!state.account) ui.owned.hidden = true;
    renderSale();
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
        const [size, minted] = await state.contract.reserve();
        state.reservedLeft = Math.max(Number(size) - Number(minted), 0);
      } catch {
        state.reservedLeft = 0; // a contract deployed before the creator reserve
      }
      try {
        state.paused = await state.contract.paused();
      } catch {
        state.paused = false; // a contract without paused()
      }
      await readSale();
      clearMessage("rpc");
    } catch (error) {
      showMessage("rpc", `The contract could not be read through your wallet: ${error?.shortMessage || error?.message || error}`);
    }
    renderFacts();
    await refreshWallet();
  }

  // The phases, the chain's clock and the sale's limits, through the wallet.
  async function readSale() {
    const block = await state.provider.getBlock("latest");
    state.clockOffset = Number(block.timestamp) - Date.now() / 1000;
    let count;
    try {
      count = Number(await state.contract.phaseCount());
    } catch {
      return; // a contract from before sale phases: it sells at price() to anyone
    }
    const ids = [...Array(count).keys()];
    const [phases, saleRemaining, maxPerWallet] = await Promise.all([
      Promise.all(ids.map((id) => state.contract.scheduledPhase(id))),
      state.contract.saleRemaining(),
      state.contract.maxPerWallet(),
    ]);
    state.phases = phases.map((p, id) => phaseFromChain(id, p));
    state.saleRemaining = Number(saleRemaining);
    state.maxPerWallet = Number(maxPerWallet);
  }

  // The connected wallet's standing in the sale as it is now: what it minted in the open phase,
  // its allowlist entry and proof (from the API), its auction refunds; then its tokens.
  async function refreshWallet() {
    const account = state.account;
    if (!state.contract || !account) return;
    const sale = findPhase();
    const standing = { account, key: saleKey(sale), minted: 0, numberMinted: 0, allowlist: null, error: "" };
    let refunds = state.refunds;
    try {
      if (sale.state === "open") {
        standing.minted = Number(await state.contract.mintedInPhase(sale.phase.id, account));
        if (isAllowlist(sale.phase)) standing.allowlist = await findProof(sale.phase, account);
      }
      if (state.maxPerWallet) standing.numberMinted = Number(await state.contract.numberMinted(account));
      refunds = await readRefunds(account);
    } catch (error) {
      standing.key = null;
      standing.error = error?.shortMessage || error?.message || String(error);
    }
    if (state.account !== account) return; // the wallet changed accounts meanwhile
    state.standing = standing;
    state.refunds = refunds;
    renderRefunds();
    renderFacts();
    refreshOwned();
  }

  // The allowlist whose root is the phase's, found among the collection's published lists
  // (GET allowlists/), then this address's entry and proof in it.
  async function findProof(phase, account) {
    let list = null;
    for (let url = `${config.allowlists_api}?page_size=200`; url && !list;) {
      const response = await fetch(url, { headers: { Accept: "application/json" }, cache: "no-store" });
      if (!response.ok) throw new Error(`the allowlist API answered HTTP ${response.status}`);
      const page = await response.json();
      list = page.results.find((a) => a.root.toLowerCase() === phase.merkleRoot) || null;
      url = page.next;
    }
    if (!list) return { status: "unpublished" };
    const response = await fetch(`${config.allowlists_api}${list.id}/proofs/${account}/`, {
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 404) {
      const body = await response.json().catch(() => null);
      if (body?.error?.code === "not_on_allowlist") return { status: "absent", list: list.name };
    }
    if (!response.ok) throw new Error(`the allowlist API answered HTTP ${response.status}`);
    const entry = await response.json();
    return { status: "listed", list: entry.allowlist, allowance: Number(entry.allowance), proof: entry.proof };
  }

  // Every started Dutch auction in which this wallet paid above the clearing price so far.
  async function readRefunds(account) {
    const now = chainNow();
    const auctions = state.phases.filter((p) => isAuction(p) && p.start <= now);
    const owed = await Promise.all(auctions.map((p) => state.contract.refundOf(p.id, account)));
    return auctions
      .map((phase, i) => ({ phase, wei: owed[i], ended: now >= phase.end || state.saleRemaining === 0 }))
      .filter((r) => r.wei > 0n);
  }

  function renderRefunds() {
    ui.refundList.replaceChildren(
      ...state.refunds.map(({ phase, wei, ended }) => {
        const li = document.createElement("li");
        li.id = `refund-${phase.id}`;
        const text = document.createElement("span");
        if (ended) {
          text.textContent = `The Dutch auction (phase ${phase.id}) has ended: you paid ${formatEther(wei)} ETH above its clearing price.`;
          const button = document.createElement("button");
          button.type = "button";
          button.className = "secondary";
          button.textContent = "Claim refund";
          button.addEventListener("click", () => claimRefund(phase, wei, button));
          li.append(text, button);
        } else {
          text.textContent = `So far you paid ${formatEther(wei)} ETH above the auction's latest price; it can be claimed once the auction ends (${localTime(phase.end)}).`;
          li.append(text);
        }
        return li;
      }),
    );
    ui.refunds.hidden = state.refunds.length === 0;
  }

  async function claimRefund(phase, wei, button) {
    clearMessage(...ERROR_KINDS);
    button.disabled = true;
    try {
      setTxStatus("Confirm the refund claim in your wallet…");
      const tx = await state.contract.claimRefund(phase.id);
      setTxStatus(`Refund claim ${tx.hash} sent; waiting for it to be mined…`);
      const receipt = await tx.wait();
      if (!receipt || receipt.status !== 1) {
        showMessage("refund-failed", `The refund claim ${tx.hash} reverted.`);
        return;
      }
      setTxStatus(`Refund of ${formatEther(wei)} ETH claimed in block ${receipt.blockNumber}.`);
    } catch (error) {
      const [kind, text, level] = describeMintError(error);
      showMessage(kind, text, level);
      setTxStatus("");
    } finally {
      await refreshWallet();
    }
  }

  // The wallet's tokens of this collection, as the backend has recorded them (current owners:
  // the listener follows transfers).
  async function refreshOwned() {
    const account = state.account;
    if (!account) return;
    let page;
    try {
      const response = await fetch(`${config.token_api}?owner=${account}&page_size=200`, {
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) throw new Error(`HTTP ${response.status}`);
      page = await response.json();
    } catch (error) {
      if (state.account !== account) return;
      ui.ownedList.replaceChildren();
      ui.ownedEmpty.textContent = `This wallet's tokens could not be listed: ${error.message}.`;
      ui.ownedEmpty.hidden = ui.owned.hidden = false;
      return;
    }
    if (state.account !== account) return;
    ui.ownedList.replaceChildren(
      ...page.results.map((token) => {
        const li = document.createElement("li");
        li.id = `owned-${token.token_id}`;
        if (token.image_url) {
          const img = document.createElement("img");
          img.src = token.image_url;
          img.alt = `${config.name} #${token.token_id}`;
          img.loading = "lazy";
          li.append(img);
        }
        const link = document.createElement("a");
        link.href = `${config.token_page}${token.token_id}/`;
        link.textContent = `${config.name} #${token.token_id}`;
        const badge = document.createElement("span");
        badge.className = "badge";
        badge.textContent = (STATUS_STAGE[token.status] || [0, 0, String(token.status).replace("_", " ").toLowerCase()])[2];
        li.append(link, badge);
        return li;
      }),
    );
    const more = page.count - page.results.length;
    ui.ownedEmpty.hidden = page.results.length > 0 && more <= 0;
    if (more > 0) ui.ownedEmpty.textContent = `… and ${plural(more, "more token")} (the API lists them all).`;
    ui.owned.hidden = false;
  }

  // -- minting ----------------------------------------------------------------------------
  // The contract's custom error a call reverted with, {name, args}: ethers names it only when
  // the contract itself made the call (a static call); a sent transaction's gas estimate fails
  // in the provider, which does not know the ABI, so the revert data is decoded here.
  function revertOf(error) {
    if (error?.revert) return error.revert;
    const data = error?.data ?? error?.info?.error?.data ?? error?.error?.data;
    if (typeof data !== "string" || !data.startsWith("0x") || data.length < 10 || !state.contract) return null;
    try {
      const parsed = state.contract.interface.parseError(data);
      return parsed ? { name: parsed.name, args: [...parsed.args] } : null;
    } catch {
      return null;
    }
  }

  function describeMintError(error) {
    if (isRejected(error)) return ["rejected", "You rejected the transaction in your wallet; nothing was sent and nothing was charged.", "warn"];
    const text = `${error?.shortMessage || ""} ${error?.message || ""} ${error?.info?.error?.message || ""}`;
    if (error?.code === "INSUFFICIENT_FUNDS" || /insufficient funds/i.test(text)) {
      return ["insufficient-funds", "Insufficient funds: your account cannot pay for this mint and its gas. Add ETH to it or mint fewer tokens.", "error"];
    }
    const revert = revertOf(error);
    if (revert) {
      const args = (revert.args || []).map(String);
      switch (revert.name) {
        case "SoldOut":
          return args[1] === "0"
            ? ["sold-out", soldOutText(), "warn"]
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
          return [
            "wrong-payment",
            `The price changed while you were minting: ${formatEther(BigInt(args[0]))} ETH was sent and the contract asked for ${formatEther(BigInt(args[1]))} ETH. Nothing was charged; try again.`,
            "warn",
          ];
        case "ZeroQuantity":
          return ["quantity", "Choose at least 1 token.", "warn"];
        case "SaleNotOpen":
          return args[0] === "0"
            ? ["sale-over", "The sale is over: every phase has ended.", "warn"]
            : ["not-open", `The sale is not open yet: it opens at ${localTime(Number(args[0]))}.`, "warn"];
        case "AllowlistRequired":
        case "NotAllowlisted":
          return ["not-allowlisted", "This wallet is not on the allowlist for this phase, so it cannot mint until a public phase opens.", "warn"];
        case "NoAllowlistPhase":
          return ["not-open", "No allowlist phase is open now: the phase has changed. The page now shows the current one; try again.", "warn"];
        case "PhaseCapExceeded":
          return args[2] === "0"
            ? ["phase-cap", "This wallet has minted all it may in this phase.", "warn"]
            : ["phase-cap", `This wallet may mint ${args[2]} more in this phase; you asked for ${args[1]}.`, "warn"];
        case "NotAnAuction":
          return ["refund-failed", `Phase ${args[0]} is not a Dutch auction: there is nothing to claim back.`, "warn"];
        case "AuctionNotEnded":
          return ["refund-failed", `The auction has not ended yet: refunds can be claimed from ${localTime(Number(args[1]))}.`, "warn"];
        case "NothingToClaim":
          return ["refund-failed", "This wallet has no refund to claim from this auction (already claimed, or it paid the clearing price).", "warn"];
        case "FailedCall":
          return ["refund-failed", "The refund could not be sent to this wallet: it refused the ether.", "error"];
        default:
          return ["reverted", `The contract refused the mint: ${revert.name}(${args.join(", ")}).`, "error"];
      }
    }
    return ["mint-failed", `The mint failed: ${error?.shortMessage || error?.message || error}`, "error"];
  }

  // the messages a mint or a claim may leave; each new attempt clears them
  const ERROR_KINDS = [
    "rejected", "insufficient-funds", "too-many", "wallet-cap", "not-open", "sale-over", "not-allowlisted",
    "phase-cap", "wrong-payment", "reverted", "mint-failed", "refund-failed", "quantity",
  ];

  async function mint(event) {
    event.preventDefault();
    clearMessage(...ERROR_KINDS);
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
    // The sale as the page knows it: a mint the contract would refuse is not sent.
    const sale = findPhase();
    if (sale.state === "upcoming") {
      showMessage("not-open", `The sale is not open yet: it opens at ${localTime(sale.phase.start)}.`, "warn");
      return;
    }
    if (sale.state === "over") {
      showMessage("sale-over", "The sale is over: every phase has ended.", "warn");
      return;
    }
    if (walletRemaining() === null) await refreshWallet();
    const listed = sale.state === "open" && isAllowlist(sale.phase) ? state.standing?.allowlist : null;
    if (listed && listed.status !== "listed") {
      showMessage(
        "not-allowlisted",
        listed.status === "absent"
          ? "This wallet is not on the allowlist for this phase, so it cannot mint until a public phase opens. Nothing was sent."
          : "This phase is for an allowlist this site does not publish, so this wallet's proof cannot be found here. Nothing was sent.",
        "warn",
      );
      return;
    }
    const left = walletRemaining();
    if (left !== null && quantity > left) {
      showMessage(
        "phase-cap",
        left === 0
          ? `This wallet has minted all it may in this ${sale.state === "open" ? "phase" : "sale"}. Nothing was sent.`
          : `This wallet may mint ${left} more${sale.state === "open" ? " in this phase" : ""}; you asked for ${quantity}. Nothing was sent.`,
        "warn",
      );
      return;
    }
    state.busy = true;
    updateMintButton();
    try {
      // price() now, as the contract's next block will see it or lower: an auction only falls,
      // and takes any excess back after it ends (claimRefund)
      const unit = await state.contract.price();
      const value = unit * BigInt(quantity);
      const balance = await state.provider.getBalance(state.account);
      if (balance < value) {
        showMessage(
          "insufficient-funds",
          `Insufficient funds: ${quantity === 1 ? "1 token costs" : `${quantity} tokens cost`} ${formatEther(value)} ETH plus gas, and your account holds ${formatEther(balance)} ETH.`,
        );
        return;
      }
      setTxStatus(`Confirm the transaction in your wallet: ${formatEther(value)} ETH for ${plural(quantity, "token")}…`);
      const mint = listed ? state.contract.mintAllowlisted : state.contract.mint;
      const args = listed ? [quantity, listed.allowance, listed.proof] : [quantity];
      // 20% over the estimate, as the backend's sender adds: an auction's first second prices
      // on a shorter path than the seconds after it, so an exact estimate can run out of gas
      const estimate = await mint.estimateGas(...args, { value });
      const tx = await mint(...args, { value, gasLimit: (estimate * 12n) / 10n });
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
        if (!card.recorded) {
          card.recorded = true; // the backend has it now: the wallet's list can show it
          refreshOwned();
        }
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
  setInterval(renderSale, 1000); // a Dutch auction's price and the phases move with the clock
})();
