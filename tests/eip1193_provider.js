// A test wallet for the browser tests: an EIP-1193 provider (window.ethereum) that forwards
// JSON-RPC to anvil, whose accounts are unlocked, so eth_sendTransaction is signed by anvil.
// Injected with Playwright's add_init_script after `window.__testWallet = {...}` sets:
//   rpcUrl       anvil's URL (anvil answers CORS requests from any origin by default)
//   account      the collector's address, returned by eth_requestAccounts / eth_accounts
//   chainId      the chain the wallet says it is on (hex); a wrong one tests the switch
//   knownChains  chain ids (hex) wallet_switchEthereumChain accepts; others fail with 4902
//   reject       methods the "user" rejects with EIP-1193 error 4001
//   none         true: no window.ethereum at all
//   announce     wallet names to announce by EIP-6963 (each its own provider over the same
//                wallet; the name of the one last used is in window.__testWallet.lastUsed)
//   legacy       false: announce only, no window.ethereum
// Every request is logged in window.__testWallet.calls for the tests to inspect.
(() => {
  "use strict";
  const wallet = window.__testWallet;
  if (!wallet || wallet.none) return;
  wallet.calls = [];
  wallet.knownChains = wallet.knownChains || [wallet.chainId];
  wallet.reject = wallet.reject || [];
  const listeners = {};
  let nextId = 1;

  class ProviderRpcError extends Error {
    constructor(code, message, data) {
      super(message);
      this.code = code;
      if (data !== undefined) this.data = data;
    }
  }

  function emit(event, value) {
    for (const fn of listeners[event] || []) fn(value);
  }

  async function forward(method, params) {
    const response = await fetch(wallet.rpcUrl, {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify({ jsonrpc: "2.0", id: nextId++, method, params: params || [] }),
    });
    const body = await response.json();
    if (body.error) throw new ProviderRpcError(body.error.code, body.error.message, body.error.data);
    return body.result;
  }

  async function request({ method, params }) {
    wallet.calls.push(method);
    if (wallet.reject.includes(method)) throw new ProviderRpcError(4001, "User rejected the request.");
    switch (method) {
      case "eth_requestAccounts":
        wallet.connected = true;
        emit("connect", { chainId: wallet.chainId });
        return [wallet.account];
      case "eth_accounts":
        return wallet.connected ? [wallet.account] : [];
      case "eth_chainId":
        return wallet.chainId;
      case "net_version":
        return String(Number.parseInt(wallet.chainId, 16));
      case "wallet_switchEthereumChain": {
        const chainId = params[0].chainId;
        if (!wallet.knownChains.includes(chainId)) {
          throw new ProviderRpcError(4902, `Unrecognized chain ID "${chainId}". Try adding the chain using wallet_addEthereumChain first.`);
        }
        wallet.chainId = chainId;
        emit("chainChanged", chainId);
        return null;
      }
      case "wallet_addEthereumChain": {
        const chain = params[0];
        wallet.added = chain;
        wallet.knownChains.push(chain.chainId);
        wallet.chainId = chain.chainId;
        emit("chainChanged", chain.chainId);
        return null;
      }
      case "eth_sendTransaction":
        // a real wallet fills in the sender; anvil signs for its unlocked accounts
        return forward(method, [{ from: wallet.account, ...params[0] }]);
      default:
        return forward(method, params);
    }
  }

  function provider(name) {
    return {
      isTestWallet: true,
      request(args) {
        wallet.lastUsed = name;
        return request(args);
      },
      on(event, fn) {
        (listeners[event] = listeners[event] || []).push(fn);
        return this;
      },
      removeListener(event, fn) {
        listeners[event] = (listeners[event] || []).filter((f) => f !== fn);
        return this;
      },
    };
  }

  if (wallet.legacy !== false) window.ethereum = provider("window.ethereum");
  // EIP-6963: each named wallet announces itself on load and whenever a page asks
  const announced = (wallet.announce || []).map((name, i) => Object.freeze({
    info: { uuid: `00000000-0000-4000-8000-00000000000${i}`, name, icon: "data:image/svg+xml,<svg xmlns='http://www.w3.org/2000/svg'/>", rdns: `test.wallet${i}` },
    provider: provider(name),
  }));
  const announce = () => {
    for (const detail of announced) {
      window.dispatchEvent(new CustomEvent("eip6963:announceProvider", { detail }));
    }
  };
  window.addEventListener("eip6963:requestProvider", announce);
  announce();
})();
