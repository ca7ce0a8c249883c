// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721A} from "erc721a/contracts/ERC721A.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {ERC2981} from "@openzeppelin/contracts/token/common/ERC2981.sol";
import {Pausable} from "@openzeppelin/contracts/utils/Pausable.sol";
import {Address} from "@openzeppelin/contracts/utils/Address.sol";
import {MerkleProof} from "@openzeppelin/contracts/utils/cryptography/MerkleProof.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IVRFCoordinatorV2Plus} from "@chainlink/contracts/src/v0.8/vrf/dev/interfaces/IVRFCoordinatorV2Plus.sol";
import {VRFV2PlusClient} from "@chainlink/contracts/src/v0.8/vrf/dev/libraries/VRFV2PlusClient.sol";
import {
    AuctionNotEnded,
    InvalidPhasePrice,
    InvalidPhaseTimes,
    NotAnAuction,
    NothingToClaim,
    Phase,
    PhaseOutOfOrder,
    PhaseStarted,
    Purchase,
    SaleRules,
    Sales,
    TooManyPhases,
    UnknownPhase
} from "./SaleRules.sol";

/// @title MintOnDemand
/// @notice ERC-721 collection minted on demand. Each token's seed is derived on-chain from the hash
/// of the block that included its mint, or of the block `seedDelay` blocks after it (fixed at
/// deployment), so neither the minter nor the operator can choose it. The
/// operator later publishes the sha256 of the token's metadata; `tokenURI` is the matching IPFS
/// CIDv1 (raw codec, sha2-256), so the on-chain value is itself the provenance hash.
/// @dev ERC-721 core is ERC721A 4.3.0 (batch mints write one ownership slot per transaction, not one
/// per token); royalties (ERC-2981), roles, pausing and withdrawal are OpenZeppelin v5.
///
/// Storage per mint transaction ("batch"): ONE slot at the batch's first token id, packing
/// (mintBlock uint64 | quantity uint32 << 64 | seedSource uint8 << 96), and, once seeds are
/// committed, ONE bytes32 holding the seed block's hash. A token's seed is
/// keccak256(abi.encodePacked(batchBlockHash, tokenId)), computed in `seedOf`.
///
/// The seed block is `mintBlock + seedDelay`. With `seedDelay` 0 it is the mint block itself,
/// whose producer may pick among candidate blocks knowing the mints in them; with k > 0 it is a
/// block produced after the mint was fixed, whose producer would also have to control the mint's
/// block to aim at a token (docs/provenance.md states the bias that remains).
///
/// Seed sources, in the order `commitSeeds` tries them:
///   1. `blockhash(seedBlock)`, available for the last 256 blocks;
///   2. the EIP-2935 block hash history contract (about 8191 blocks), where the chain has it; emits
///      `SeedsFromHistory`;
///   3. otherwise `commitSeeds` reverts `SeedWindowExpired` and only the admin can commit with
///      `commitLateSeeds`, passing the block hash; allowed only when neither 1 nor 2 can give it,
///      and evented (`LateSeedsCommitted`) so everyone sees which seeds were not derived on-chain.
///
/// A collection deployed with a Chainlink VRF v2.5 coordinator (`vrf.coordinator` set) takes no
/// block hash at all: `commitSeeds` requests one random word for the batches it names (one
/// request per call, `SeedsRequested` per batch), the coordinator fulfils it through
/// `rawFulfillRandomWords` (`SeedsFulfilled`), and each token's seed is
/// keccak256(abi.encodePacked(bytes32(randomWord), tokenId)). `commitLateSeeds` is refused there.
///
/// Sales. With no phase scheduled, `mint` sells at `price()` to anyone once the config is frozen.
/// The admin may schedule up to 16 ordered, non-overlapping phases (`setPhase`), each with its own
/// times, per-wallet limit and price rule: a fixed price, or a Dutch auction falling from `price`
/// by `dropPerStep` every `stepSeconds` down to `floorPrice`, settled (every buyer pays the price of
/// the phase's last sale and claims the difference with `claimRefund`). A phase with a Merkle root
/// admits only the addresses of its allowlist (`mintAllowlisted`), each up to its allowance; the
/// leaves are built as OpenZeppelin's StandardMerkleTree (npm merkle-tree) builds ["address",
/// "uint256"] leaves. A creator reserve (fixed at deployment) is kept out of every sale and minted
/// by the admin with `airdrop`; those tokens are batches like any other and get seeds the same way.
/// `withdraw` sends the proceeds (less what auction buyers may still claim back) to `payee()`,
/// typically a `PaymentSplit` that the ERC-2981 royalties also point at.
contract MintOnDemand is ERC721A, ERC2981, AccessControl, Pausable {
    /// @notice Chainlink VRF v2.5 settings; `coordinator` zero: seeds come from block hashes.
    struct VrfConfig {
        address coordinator;
        uint256 subscriptionId;
        bytes32 keyHash;
        uint16 requestConfirmations;
        uint32 callbackGasLimit;
        bool nativePayment;
    }

    /// @notice Construction parameters, one struct so deployment scripts name every field.
    struct InitConfig {
        string name;
        string symbol;
        uint256 price; // the price while no phase is scheduled
        uint256 maxSupply;
        uint256 maxPerTx;
        uint256 maxPerWallet; // 0 = no cap
        uint256 reserve; // creator reserve: kept out of every sale, minted by `airdrop`
        address admin;
        address payee; // receives withdrawn proceeds (a PaymentSplit, for a split)
        address royaltyReceiver;
        uint96 royaltyBps;
        string placeholderURI;
        uint8 seedDelay; // 0: the mint block's hash; k: the hash of the block k blocks later
        VrfConfig vrf; // coordinator set: seeds from Chainlink VRF (seedDelay must then be 0)
    }

    /// @notice At most this many sale phases.
    uint256 public constant MAX_PHASES = 16;

    /// @notice Role allowed to `publish` metadata digests.
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");
    /// @notice Role that runs the sale: phases, the base price, pausing, airdrops from the reserve
    /// and withdrawals to the payee (whom only the admin can change). A backend's sale worker holds
    /// it while the admin role stays with a multisig.
    bytes32 public constant SALES_ROLE = keccak256("SALES_ROLE");

    /// @notice Seed source: not committed yet.
    uint8 public constant SEED_SOURCE_NONE = 0;
    /// @notice Seed source: `blockhash(mintBlock)` inside the 256-block window.
    uint8 public constant SEED_SOURCE_BLOCKHASH = 1;
    /// @notice Seed source: the EIP-2935 block hash history contract.
    uint8 public constant SEED_SOURCE_HISTORY = 2;
    /// @notice Seed source: block hash supplied by the admin with `commitLateSeeds`.
    uint8 public constant SEED_SOURCE_LATE = 3;
    /// @notice Seed source: a Chainlink VRF random word (requested; the seed exists once fulfilled).
    uint8 public constant SEED_SOURCE_VRF = 4;
    /// @notice Seed sources of a collection with a seed delay (future-block seeds): the seed
    /// block's hash from `blockhash`, from the EIP-2935 history, or supplied late by the admin.
    uint8 public constant SEED_SOURCE_FUTURE_BLOCKHASH = 5;
    uint8 public constant SEED_SOURCE_FUTURE_HISTORY = 6;
    uint8 public constant SEED_SOURCE_FUTURE_LATE = 7;
    /// @dev What a seed delay adds to the block-hash sources 1-3 (giving 5-7).
    uint8 private constant _FUTURE_OFFSET = 4;

    /// @notice EIP-2935 history storage contract (same address on every chain that has it).
    address public constant HISTORY_STORAGE = 0x0000F90827F1C53a10cb7A02335B175320002935;
    /// @dev keccak256 of the EIP-2935 runtime code. Anything else at that address is ignored.
    bytes32 private constant _HISTORY_CODEHASH = 0x6e49e66782037c0555897870e29fa5e552daf4719552131a0abce779daec0a5d;

    bytes4 private constant _ERC4906_INTERFACE_ID = 0x49064906;

    uint256 private constant _QUANTITY_SHIFT = 64;
    uint256 private constant _SOURCE_SHIFT = 96;
    uint256 private constant _MINT_BLOCK_MASK = (1 << 64) - 1;
    uint256 private constant _QUANTITY_MASK = (1 << 32) - 1;

    uint256 private immutable _maxSupply;
    uint256 private immutable _maxPerTx;
    uint256 private immutable _maxPerWallet;
    uint256 private immutable _reserve;
    uint256 private immutable _seedDelay;
    address private immutable _vrfCoordinator;
    uint256 private immutable _vrfSubscriptionId;
    bytes32 private immutable _vrfKeyHash;
    uint16 private immutable _vrfRequestConfirmations;
    uint32 private immutable _vrfCallbackGasLimit;
    bool private immutable _vrfNativePayment;

    uint128 private _price;
    uint64 private _phaseCount;
    uint64 private _reserveMinted;
    address private _payee;
    bytes32 private _configDigest;
    string private _contractURI;
    string private _placeholderURI;

    /// @dev Batch start token id => mintBlock | quantity << 64 | seedSource << 96. Zero for ids that
    /// are not the first of a batch.
    mapping(uint256 startTokenId => uint256) private _batches;
    /// @dev Batch start token id => hash of the batch's seed block once seeds are committed, or for a
    /// VRF collection the id of the batch's VRF request (as bytes32).
    mapping(uint256 startTokenId => bytes32) private _batchBlockHash;
    /// @dev VRF request id => its random word, once fulfilled.
    mapping(uint256 requestId => uint256) private _vrfWord;
    /// @dev Token id => sha256 of its metadata bytes, once published.
    mapping(uint256 tokenId => bytes32) private _metadataDigest;
    /// @dev Set once by `lockMetadata`; then no published digest can be reopened.
    bool private _metadataLocked;

    mapping(uint256 phaseId => Phase) private _phases;
    mapping(uint256 phaseId => Sales) private _sales;
    mapping(uint256 phaseId => mapping(address buyer => Purchase)) private _purchases;

    /// @notice Emitted for every token of a batch when the batch's seeds are committed.
    event SeedCommitted(uint256 indexed tokenId, bytes32 seed);
    /// @notice The batch `fromTokenId`..`toTokenId` got its seed block hash from the EIP-2935 history.
    event SeedsFromHistory(uint256 fromTokenId, uint256 toTokenId, uint256 seedBlock);
    /// @notice The admin supplied the block hash for `fromTokenId`..`toTokenId`: not derived on-chain.
    event LateSeedsCommitted(uint256 fromTokenId, uint256 toTokenId, bytes32 blockHash, address committer);
    /// @notice The seed scheme, at deployment: seeds come from the block `seedDelay` blocks after
    /// each mint's block (0: the mint block).
    event SeedDelaySet(uint256 seedDelay);
    /// @notice The batch `fromTokenId`..`toTokenId` waits for VRF request `requestId`.
    event SeedsRequested(uint256 indexed requestId, uint256 fromTokenId, uint256 toTokenId);
    /// @notice The VRF coordinator fulfilled `requestId`: the batches it covers are seeded from
    /// `randomWord`.
    event SeedsFulfilled(uint256 indexed requestId, uint256 randomWord);
    /// @notice The collection's generation config and rarity table are frozen under `digest`.
    event ConfigFrozen(bytes32 digest);
    /// @notice ERC-7572: `contractURI()` changed.
    event ContractURIUpdated();
    /// @notice ERC-4906: the metadata of `_tokenId` changed.
    event MetadataUpdate(uint256 _tokenId);
    /// @notice ERC-4906: the metadata of `_fromTokenId`..`_toTokenId` (inclusive) changed.
    event BatchMetadataUpdate(uint256 _fromTokenId, uint256 _toTokenId);
    /// @notice The admin cleared the published digest of `tokenId` so it can be published again.
    event MetadataReopened(uint256 indexed tokenId);
    /// @notice `lockMetadata` was called: from this block on no published digest can be reopened.
    event MetadataLocked();
    /// @notice The mint price changed.
    event PriceChanged(uint256 oldPrice, uint256 newPrice);
    /// @notice Sale phase `phaseId` was scheduled or replaced.
    event PhaseSet(uint256 indexed phaseId, Phase phase);
    /// @notice The last sale phase, `phaseId`, was removed before it started.
    event PhaseDropped(uint256 indexed phaseId);
    /// @notice `buyer` claimed `amount` wei: what it paid in Dutch auction `phaseId` above the
    /// clearing price.
    event RefundClaimed(uint256 indexed phaseId, address indexed buyer, uint256 amount);
    /// @notice The admin minted `quantity` reserved tokens from `fromTokenId` to `to`.
    event ReserveMinted(address indexed to, uint256 fromTokenId, uint256 quantity);
    /// @notice The account that receives withdrawn proceeds changed.
    event PayeeChanged(address indexed oldPayee, address indexed newPayee);
    /// @notice `amount` wei of proceeds were sent to `payee`.
    event Withdrawn(address indexed payee, uint256 amount);
    /// @notice The default ERC-2981 royalty changed.
    event DefaultRoyaltyChanged(address indexed receiver, uint96 feeNumerator);

    error ConfigNotFrozen();
    error ConfigAlreadyFrozen();
    error EmptyDigest();
    error EmptyMetadataDigest(uint256 tokenId);
    error ZeroQuantity();
    error TooManyPerTransaction(uint256 requested, uint256 max);
    error SoldOut(uint256 requested, uint256 remaining);
    error WalletCapExceeded(uint256 requested, uint256 remaining);
    error WrongPayment(uint256 sent, uint256 expected);
    error UnknownToken(uint256 tokenId);
    error SeedAlreadyCommitted(uint256 tokenId);
    error MintBlockNotFinished(uint256 tokenId);
    error SeedBlockNotReached(uint256 tokenId, uint256 seedBlock);
    error SeedWindowExpired(uint256 tokenId, uint256 seedBlock);
    error SeedDerivableOnChain(uint256 tokenId);
    error EmptyBlockHash(uint256 tokenId);
    error ConflictingBlockHash(uint256 tokenId);
    error LengthMismatch();
    error SeedNotCommitted(uint256 tokenId);
    error AlreadyPublished(uint256 tokenId);
    error NotPublished(uint256 tokenId);
    error ZeroAddress();
    error InvalidMintLimits();
    error SaleNotOpen(uint256 nextStart);
    error AllowlistRequired(uint256 phaseId);
    error NoAllowlistPhase();
    error NotAllowlisted(address account, uint256 phaseId);
    error PhaseCapExceeded(uint256 phaseId, uint256 requested, uint256 remaining);
    error ReserveExceeded(uint256 requested, uint256 remaining);
    error NothingToWithdraw();
    error MetadataIsLocked();
    error InvalidSeedConfig();
    error OnlyVrfCoordinator(address caller);
    error VrfAlreadyFulfilled(uint256 requestId);
    error SeedsComeFromVrf();

    /// @param config Name, symbol, price (wei), supply, reserve and mint limits, roles, payee,
    /// royalty and placeholder URI. `admin` receives DEFAULT_ADMIN_ROLE, PUBLISHER_ROLE and SALES_ROLE.
    constructor(InitConfig memory config) ERC721A(config.name, config.symbol) {
        if (config.admin == address(0) || config.payee == address(0)) revert ZeroAddress();
        // maxPerTx may exceed maxSupply (SoldOut then applies); it must fit the batch record's uint32.
        if (
            config.maxSupply == 0 || config.maxPerTx == 0 || config.maxPerTx > _QUANTITY_MASK
                || config.reserve > config.maxSupply
        ) {
            revert InvalidMintLimits();
        }
        _price = SafeCast.toUint128(config.price);
        _maxSupply = config.maxSupply;
        _maxPerTx = config.maxPerTx;
        _maxPerWallet = config.maxPerWallet;
        _reserve = config.reserve;
        _seedDelay = config.seedDelay;
        if (config.vrf.coordinator != address(0) && config.seedDelay != 0) revert InvalidSeedConfig();
        _vrfCoordinator = config.vrf.coordinator;
        _vrfSubscriptionId = config.vrf.subscriptionId;
        _vrfKeyHash = config.vrf.keyHash;
        _vrfRequestConfirmations = config.vrf.requestConfirmations;
        _vrfCallbackGasLimit = config.vrf.callbackGasLimit;
        _vrfNativePayment = config.vrf.nativePayment;
        emit SeedDelaySet(config.seedDelay);
        _payee = config.payee;
        _placeholderURI = config.placeholderURI;
        _setDefaultRoyalty(config.royaltyReceiver, config.royaltyBps);
        _grantRole(DEFAULT_ADMIN_ROLE, config.admin);
        _grantRole(PUBLISHER_ROLE, config.admin);
        _grantRole(SALES_ROLE, config.admin);
    }

    // ---------------------------------------------------------------- minting

    /// @notice Mints `quantity` tokens to the caller with sequential ids (the first token is 1), at
    /// `price()` each: the base price while no phase is scheduled, else the open phase's price.
    /// @dev Requires the frozen config. A fixed price takes `msg.value == price() * quantity`
    /// exactly: the contract never sends ether back during a mint (no refund path to get wrong, no
    /// external call, hence no reentrancy surface). A Dutch auction takes at least that and records
    /// what was paid; the excess over the clearing price is claimed after the phase with
    /// `claimRefund`. Tokens go to `msg.sender` with `_mint` (no receiver callback). Emits one
    /// ERC-721 `Transfer` from address(0) per token. Reverts, in this order: `EnforcedPause`,
    /// `ConfigNotFrozen`, `SaleNotOpen` (phases are scheduled but none is open; `nextStart` is the
    /// next one's start, 0 when none is left), `AllowlistRequired` (the open phase is an allowlist:
    /// use `mintAllowlisted`), `ZeroQuantity`, `TooManyPerTransaction`, `SoldOut` (the reserve is
    /// not for sale), `WalletCapExceeded`, `PhaseCapExceeded`, `WrongPayment`.
    function mint(uint256 quantity) external payable whenNotPaused {
        (bool phased, uint256 phaseId) = _openPhase();
        if (!phased) {
            _checkQuantity(quantity);
            uint256 expected = uint256(_price) * quantity;
            if (msg.value != expected) revert WrongPayment(msg.value, expected);
            _mintBatch(msg.sender, quantity);
            return;
        }
        Phase storage phase = _phases[phaseId];
        if (phase.merkleRoot != bytes32(0)) revert AllowlistRequired(phaseId);
        _phaseMint(phaseId, phase, quantity, phase.maxPerWallet == 0 ? type(uint256).max : phase.maxPerWallet);
    }

    /// @notice Mints in the open allowlist phase: `allowance` and `proof` are the caller's entry
    /// in the phase's Merkle tree (leaf keccak256(keccak256(abi.encode(msg.sender, allowance))), as
    /// OpenZeppelin's StandardMerkleTree builds it). The caller mints at most `allowance` tokens in the
    /// phase (and at most the phase's `maxPerWallet`, when set), at the phase's price.
    /// @dev Reverts as `mint` does (`SaleNotOpen` while phases are scheduled and none is open),
    /// with `NoAllowlistPhase` (no phase scheduled, or the open one has no root) in place of
    /// `AllowlistRequired`, and `NotAllowlisted` (the proof does not prove this address and
    /// allowance).
    function mintAllowlisted(uint256 quantity, uint256 allowance, bytes32[] calldata proof)
        external
        payable
        whenNotPaused
    {
        (bool phased, uint256 phaseId) = _openPhase();
        Phase storage phase = _phases[phaseId];
        bytes32 root = phase.merkleRoot;
        if (!phased || root == bytes32(0)) revert NoAllowlistPhase();
        bytes32 leaf = keccak256(bytes.concat(keccak256(abi.encode(msg.sender, allowance))));
        if (!MerkleProof.verifyCalldata(proof, root, leaf)) revert NotAllowlisted(msg.sender, phaseId);
        uint256 cap = phase.maxPerWallet;
        _phaseMint(phaseId, phase, quantity, cap != 0 && cap < allowance ? cap : allowance);
    }

    /// @notice Mints reserved tokens to `recipients` (SALES_ROLE): `quantities[i]` to
    /// `recipients[i]`, each at most `maxPerTx()`, in all at most what is left of the reserve. The
    /// tokens are batches like bought ones (seeds, renders and publication the same way).
    /// @dev Works while minting is paused. Reverts `ConfigNotFrozen`, `LengthMismatch`,
    /// `ZeroAddress`, `ZeroQuantity`, `TooManyPerTransaction`, `ReserveExceeded`. Emits
    /// `ReserveMinted` per recipient.
    function airdrop(address[] calldata recipients, uint256[] calldata quantities)
        external
        onlyRole(SALES_ROLE)
    {
        if (_configDigest == bytes32(0)) revert ConfigNotFrozen();
        uint256 n = recipients.length;
        if (n != quantities.length) revert LengthMismatch();
        uint256 total;
        for (uint256 i = 0; i < n; ++i) {
            uint256 quantity = quantities[i];
            if (recipients[i] == address(0)) revert ZeroAddress();
            if (quantity == 0) revert ZeroQuantity();
            if (quantity > _maxPerTx) revert TooManyPerTransaction(quantity, _maxPerTx);
            total += quantity;
        }
        uint256 left = _reserve - _reserveMinted;
        if (total > left) revert ReserveExceeded(total, left);
        _reserveMinted += uint64(total);
        for (uint256 i = 0; i < n; ++i) {
            emit ReserveMinted(recipients[i], _nextTokenId(), quantities[i]);
            _mintBatch(recipients[i], quantities[i]);
        }
    }

    /// @notice After Dutch auction `phaseId` has ended (its end time passed, or nothing is left to
    /// sell), pays the caller what it paid above the clearing price (the price of the phase's last
    /// sale) for every token it bought in the phase. Pull payment: each buyer claims its own.
    /// @dev Reverts `NotAnAuction`, `AuctionNotEnded`, `NothingToClaim`. Emits `RefundClaimed`.
    function claimRefund(uint256 phaseId) external {
        uint256 due = SaleRules.claimRefund(_phases, _sales, _purchases, phaseId, saleRemaining() == 0);
        emit RefundClaimed(phaseId, msg.sender, due);
        Address.sendValue(payable(msg.sender), due);
    }

    /// @notice What `buyer` paid in Dutch auction `phaseId` above the price of the phase's last sale
    /// so far (final once the phase has ended), not yet claimed.
    function refundOf(uint256 phaseId, address buyer) external view returns (uint256) {
        return SaleRules.refundOf(_sales, _purchases, phaseId, buyer);
    }

    /// @notice Price per token in wei of a `mint` now: the open phase's (a Dutch auction's current
    /// step), else the base price.
    function price() external view returns (uint256) {
        (uint256 state, uint256 phaseId) = _findPhase();
        return state == 1 ? _priceAt(_phases[phaseId], block.timestamp) : _price;
    }

    /// @notice Whether a phase is open now, and which.
    function currentPhase() external view returns (bool open, uint256 phaseId) {
        (uint256 state, uint256 id) = _findPhase();
        return (state == 1, state == 1 ? id : 0);
    }

    /// @notice Number of scheduled phases (ids 0 .. phaseCount-1, in time order).
    function phaseCount() external view returns (uint256) {
        return _phaseCount;
    }

    /// @notice Phase `phaseId` as scheduled; reverts `UnknownPhase`.
    function scheduledPhase(uint256 phaseId) external view returns (Phase memory) {
        return SaleRules.scheduledPhase(_phases, _phaseCount, phaseId);
    }

    /// @notice Tokens `owner` minted in phase `phaseId` (what its per-wallet limit counts).
    function mintedInPhase(uint256 phaseId, address owner) external view returns (uint256) {
        if (_phases[phaseId].stepSeconds != 0) return _purchases[phaseId][owner].bought;
        uint64 aux = _getAux(owner);
        return aux >> 32 == phaseId + 1 ? uint32(aux) : 0;
    }

    /// @notice Dutch auction `phaseId`'s takings: paid, refunded, the last sale's price (the clearing
    /// price once it ends) and tokens sold.
    function auctionSales(uint256 phaseId) external view returns (Sales memory) {
        return _sales[phaseId];
    }

    /// @notice The creator reserve, and how much of it is minted.
    function reserve() external view returns (uint256 size, uint256 minted) {
        return (_reserve, _reserveMinted);
    }

    /// @notice Tokens a sale can still sell: the supply left, less the unminted reserve.
    function saleRemaining() public view returns (uint256) {
        return _maxSupply - _totalMinted() - (_reserve - _reserveMinted);
    }

    /// @notice Maximum number of tokens that can ever be minted.
    function maxSupply() external view returns (uint256) {
        return _maxSupply;
    }

    /// @notice Maximum quantity of one `mint` call.
    function maxPerTx() external view returns (uint256) {
        return _maxPerTx;
    }

    /// @notice Maximum number of tokens one address may mint in total; 0 means no cap.
    function maxPerWallet() external view returns (uint256) {
        return _maxPerWallet;
    }

    /// @notice Number of tokens `owner` has minted (transfers do not change it).
    function numberMinted(address owner) external view returns (uint256) {
        return _numberMinted(owner);
    }

    /// @notice Block number of the block that included the token's mint.
    function mintBlockOf(uint256 tokenId) external view returns (uint256) {
        _requireKnown(tokenId);
        (, uint256 packed) = _batchOf(tokenId);
        return packed & _MINT_BLOCK_MASK;
    }

    // ---------------------------------------------------------------- seeds

    /// @notice Blocks between a mint's block and the block whose hash seeds it (0: the mint block).
    function seedDelay() external view returns (uint256) {
        return _seedDelay;
    }

    /// @notice The block whose hash seeds the token: its mint block plus `seedDelay()`.
    function seedBlockOf(uint256 tokenId) external view returns (uint256) {
        _requireKnown(tokenId);
        (, uint256 packed) = _batchOf(tokenId);
        return (packed & _MINT_BLOCK_MASK) + _seedDelay;
    }

    /// @notice The token's seed, keccak256(abi.encodePacked(seedBlockHash, tokenId)), or 0x0 until
    /// committed (also 0x0 for unknown tokens).
    function seedOf(uint256 tokenId) external view returns (bytes32) {
        if (!_isKnown(tokenId)) return bytes32(0);
        (uint256 start, uint256 packed) = _batchOf(tokenId);
        bytes32 blockHash = _batchBlockHash[start];
        if (blockHash == bytes32(0)) return bytes32(0);
        if (packed >> _SOURCE_SHIFT == SEED_SOURCE_VRF) {
            uint256 word = _vrfWord[uint256(blockHash)];
            return word == 0 ? bytes32(0) : _seed(bytes32(word), tokenId);
        }
        return _seed(blockHash, tokenId);
    }

    /// @notice The Chainlink VRF coordinator seeds come from (zero: block hashes).
    function vrfCoordinator() external view returns (address) {
        return _vrfCoordinator;
    }

    /// @notice The VRF request that seeds the token and its random word (0 until fulfilled); both
    /// 0 for a token seeded from a block hash or not requested yet.
    function vrfRequestOf(uint256 tokenId) external view returns (uint256 requestId, uint256 randomWord) {
        _requireKnown(tokenId);
        (uint256 start, uint256 packed) = _batchOf(tokenId);
        if (packed >> _SOURCE_SHIFT != SEED_SOURCE_VRF) return (0, 0);
        requestId = uint256(_batchBlockHash[start]);
        randomWord = _vrfWord[requestId];
    }

    /// @notice The VRF coordinator's callback with the random word of `requestId`.
    /// @dev Only the coordinator may call it, once per request; it stores the word (one slot, whatever
    /// the number of batches the request covers) and emits `SeedsFulfilled`.
    function rawFulfillRandomWords(uint256 requestId, uint256[] calldata randomWords) external {
        if (msg.sender != _vrfCoordinator || msg.sender == address(0)) revert OnlyVrfCoordinator(msg.sender);
        if (_vrfWord[requestId] != 0) revert VrfAlreadyFulfilled(requestId);
        _vrfWord[requestId] = randomWords[0];
        emit SeedsFulfilled(requestId, randomWords[0]);
    }

    /// @notice Where the token's seed came from: 0 not committed, 1 `blockhash`, 2 EIP-2935 history,
    /// 3 late commit by the admin, 4 Chainlink VRF (requested; `seedOf` is 0x0 until fulfilled), and
    /// for a collection with a seed delay 5 `blockhash(seedBlock)`, 6 EIP-2935 history, 7 late.
    function seedSourceOf(uint256 tokenId) external view returns (uint8) {
        _requireKnown(tokenId);
        (, uint256 packed) = _batchOf(tokenId);
        return uint8(packed >> _SOURCE_SHIFT);
    }

    /// @notice Commits the seeds of the batches (mint transactions) holding `tokenIds`, computing each
    /// batch's block hash on-chain: `blockhash(seedBlock)`, else the EIP-2935 history contract.
    /// @dev Committing one id commits its whole batch and emits `SeedCommitted` for every token in it;
    /// further ids of a batch committed earlier in this call are skipped. Reverts `UnknownToken`,
    /// `SeedAlreadyCommitted` (batch committed by an earlier call), `MintBlockNotFinished` (the mint
    /// block is the current block; `seedDelay` 0), `SeedBlockNotReached` (the seed block is not
    /// finished yet; `seedDelay` > 0) and `SeedWindowExpired` (neither source has the hash: see
    /// `commitLateSeeds`). Anyone may call it: it reads only chain data, so the caller chooses
    /// nothing, and a role would add only the power to let the window pass.
    function commitSeeds(uint256[] calldata tokenIds) external {
        if (_vrfCoordinator != address(0)) {
            _requestSeeds(tokenIds);
            return;
        }
        uint256 n = tokenIds.length;
        uint256[] memory doneStarts = new uint256[](n);
        uint256 doneCount;
        uint256 curStart;
        uint256 curEnd; // exclusive; 0 = no batch cached
        for (uint256 i = 0; i < n; ++i) {
            uint256 tokenId = tokenIds[i];
            if (tokenId >= curStart && tokenId < curEnd) continue;
            _requireKnown(tokenId);
            (uint256 start, uint256 packed) = _batchOf(tokenId);
            uint256 end = start + ((packed >> _QUANTITY_SHIFT) & _QUANTITY_MASK);
            if (packed >> _SOURCE_SHIFT != SEED_SOURCE_NONE) {
                if (!_contains(doneStarts, doneCount, start)) revert SeedAlreadyCommitted(tokenId);
                (curStart, curEnd) = (start, end);
                continue;
            }
            uint256 seedBlock = _seedBlock(tokenId, packed);
            bytes32 blockHash = blockhash(seedBlock);
            uint8 source = SEED_SOURCE_BLOCKHASH;
            if (blockHash == bytes32(0)) {
                blockHash = _historyBlockHash(seedBlock);
                if (blockHash == bytes32(0)) revert SeedWindowExpired(tokenId, seedBlock);
                source = SEED_SOURCE_HISTORY;
                emit SeedsFromHistory(start, end - 1, seedBlock);
            }
            _commitBatch(start, end, packed, blockHash, source);
            doneStarts[doneCount++] = start;
            (curStart, curEnd) = (start, end);
        }
    }

    /// @notice Admin-only fallback for batches whose seed block hash the chain can no longer give:
    /// commits each batch from the block hash the admin supplies (source 3) and emits
    /// `LateSeedsCommitted`, so everyone can see which seeds were not derived on-chain. Anyone can check
    /// the supplied hash against the chain's block headers.
    /// @param tokenIds Tokens whose batches to commit; further ids of a batch committed earlier in this
    /// call are skipped (their hash must be the same: `ConflictingBlockHash`).
    /// @param blockHashes Hash of each token's seed block (`seedBlockOf`), same order as `tokenIds`.
    /// @dev Reverts `SeedDerivableOnChain` while `blockhash` or the EIP-2935 history still has the
    /// hash (use `commitSeeds`), plus `LengthMismatch`, `UnknownToken`, `SeedAlreadyCommitted`,
    /// `MintBlockNotFinished`, `SeedBlockNotReached` and `EmptyBlockHash`.
    function commitLateSeeds(uint256[] calldata tokenIds, bytes32[] calldata blockHashes)
        external
        onlyRole(DEFAULT_ADMIN_ROLE)
    {
        if (_vrfCoordinator != address(0)) revert SeedsComeFromVrf();
        uint256 n = tokenIds.length;
        if (n != blockHashes.length) revert LengthMismatch();
        uint256[] memory doneStarts = new uint256[](n);
        uint256 doneCount;
        for (uint256 i = 0; i < n; ++i) {
            uint256 tokenId = tokenIds[i];
            bytes32 blockHash = blockHashes[i];
            _requireKnown(tokenId);
            if (blockHash == bytes32(0)) revert EmptyBlockHash(tokenId);
            (uint256 start, uint256 packed) = _batchOf(tokenId);
            if (packed >> _SOURCE_SHIFT != SEED_SOURCE_NONE) {
                if (!_contains(doneStarts, doneCount, start)) revert SeedAlreadyCommitted(tokenId);
                if (_batchBlockHash[start] != blockHash) revert ConflictingBlockHash(tokenId);
                continue;
            }
            uint256 seedBlock = _seedBlock(tokenId, packed);
            if (blockhash(seedBlock) != bytes32(0) || _historyBlockHash(seedBlock) != bytes32(0)) {
                revert SeedDerivableOnChain(tokenId);
            }
            uint256 end = start + ((packed >> _QUANTITY_SHIFT) & _QUANTITY_MASK);
            emit LateSeedsCommitted(start, end - 1, blockHash, msg.sender);
            _commitBatch(start, end, packed, blockHash, SEED_SOURCE_LATE);
            doneStarts[doneCount++] = start;
        }
    }

    // ---------------------------------------------------------------- collection config

    /// @notice Freezes the digest of the collection's generation config and rarity table and sets
    /// `contractURI` (ERC-7572) to the collection metadata that holds that config. Once only; minting
    /// opens with it.
    /// @dev Reverts `ConfigAlreadyFrozen` or `EmptyDigest`. Emits `ConfigFrozen` and `ContractURIUpdated`.
    function freezeConfig(bytes32 digest, string calldata contractURI_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_configDigest != bytes32(0)) revert ConfigAlreadyFrozen();
        if (digest == bytes32(0)) revert EmptyDigest();
        _configDigest = digest;
        _contractURI = contractURI_;
        emit ConfigFrozen(digest);
        emit ContractURIUpdated();
    }

    /// @notice The frozen config digest, or 0x0 before `freezeConfig`.
    function configDigest() external view returns (bytes32) {
        return _configDigest;
    }

    /// @notice ERC-7572 collection metadata URI.
    function contractURI() external view returns (string memory) {
        return _contractURI;
    }

    /// @notice Points `contractURI` elsewhere (e.g. a new gateway); the frozen digest does not change.
    function setContractURI(string calldata contractURI_) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _contractURI = contractURI_;
        emit ContractURIUpdated();
    }

    // ---------------------------------------------------------------- publishing

    /// @notice Publishes the sha256 digest of each token's metadata (write-once unless reopened).
    /// @param tokenIds Tokens whose seeds are committed.
    /// @param metadataSha256 sha256 of each token's canonical metadata bytes, same order as `tokenIds`.
    /// @dev Emits one ERC-4906 `BatchMetadataUpdate(first, last)` when `tokenIds` is a contiguous
    /// ascending run of more than one id, else `MetadataUpdate` per token. Reverts `LengthMismatch`,
    /// `UnknownToken`, `SeedNotCommitted`, `AlreadyPublished`, `EmptyMetadataDigest`.
    function publish(uint256[] calldata tokenIds, bytes32[] calldata metadataSha256)
        external
        onlyRole(PUBLISHER_ROLE)
    {
        uint256 n = tokenIds.length;
        if (n != metadataSha256.length) revert LengthMismatch();
        uint256 curStart;
        uint256 curEnd; // exclusive; batch known to be committed
        bool contiguous = true;
        for (uint256 i = 0; i < n; ++i) {
            uint256 tokenId = tokenIds[i];
            if (i > 0 && tokenId != tokenIds[i - 1] + 1) contiguous = false;
            if (tokenId < curStart || tokenId >= curEnd) {
                _requireKnown(tokenId);
                (uint256 start, uint256 packed) = _batchOf(tokenId);
                if (packed >> _SOURCE_SHIFT == SEED_SOURCE_NONE) revert SeedNotCommitted(tokenId);
                (curStart, curEnd) = (start, start + ((packed >> _QUANTITY_SHIFT) & _QUANTITY_MASK));
            }
            bytes32 digest = metadataSha256[i];
            if (digest == bytes32(0)) revert EmptyMetadataDigest(tokenId);
            if (_metadataDigest[tokenId] != bytes32(0)) revert AlreadyPublished(tokenId);
            _metadataDigest[tokenId] = digest;
        }
        if (contiguous && n > 1) {
            emit BatchMetadataUpdate(tokenIds[0], tokenIds[n - 1]);
        } else {
            for (uint256 i = 0; i < n; ++i) {
                emit MetadataUpdate(tokenIds[i]);
            }
        }
    }

    /// @notice Clears the published digest of each token so it can be published again (admin only,
    /// and only until `lockMetadata`).
    /// @dev Reverts `MetadataIsLocked` once locked, `NotPublished` for a token without a digest.
    /// Emits `MetadataReopened` and ERC-4906 `MetadataUpdate` per token; `tokenURI` returns the
    /// placeholder until republished.
    function reopen(uint256[] calldata tokenIds) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_metadataLocked) revert MetadataIsLocked();
        for (uint256 i = 0; i < tokenIds.length; ++i) {
            uint256 tokenId = tokenIds[i];
            if (_metadataDigest[tokenId] == bytes32(0)) revert NotPublished(tokenId);
            delete _metadataDigest[tokenId];
            emit MetadataReopened(tokenId);
            emit MetadataUpdate(tokenId);
        }
    }

    /// @notice One-way (admin only): from now on no published digest can be reopened, so every
    /// token's metadata hash on-chain is final once published. Tokens not yet published can still
    /// be published, once. Emits `MetadataLocked`; reverts `MetadataIsLocked` if already locked.
    function lockMetadata() external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (_metadataLocked) revert MetadataIsLocked();
        _metadataLocked = true;
        emit MetadataLocked();
    }

    /// @notice Whether `lockMetadata` has been called.
    function metadataLocked() external view returns (bool) {
        return _metadataLocked;
    }

    /// @notice sha256 of the token's metadata bytes, or 0x0 until published.
    function metadataDigestOf(uint256 tokenId) external view returns (bytes32) {
        return _metadataDigest[tokenId];
    }

    /// @notice "ipfs://" + CIDv1 (base32, raw codec, sha2-256) of the token's metadata once published;
    /// before that, `placeholderURI()` (the same for every unpublished token, possibly "").
    /// @dev Reverts `UnknownToken` for tokens that were never minted.
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        _requireKnown(tokenId);
        bytes32 digest = _metadataDigest[tokenId];
        if (digest == bytes32(0)) return _placeholderURI;
        return string.concat("ipfs://", SaleRules.cidV1Base32(digest));
    }

    /// @notice URI every unpublished token's `tokenURI` returns.
    function placeholderURI() external view returns (string memory) {
        return _placeholderURI;
    }

    /// @notice Changes the placeholder; emits `BatchMetadataUpdate(1, totalMinted)` if any token exists.
    function setPlaceholderURI(string calldata uri) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _placeholderURI = uri;
        uint256 minted = _totalMinted();
        if (minted != 0) emit BatchMetadataUpdate(_startTokenId(), _startTokenId() + minted - 1);
    }

    // ---------------------------------------------------------------- admin

    /// @notice Stops minting (SALES_ROLE). Emits `Paused`.
    function pause() external onlyRole(SALES_ROLE) {
        _pause();
    }

    /// @notice Reopens minting (SALES_ROLE). Emits `Unpaused`.
    function unpause() external onlyRole(SALES_ROLE) {
        _unpause();
    }

    /// @notice Sets the base price per token in wei, the price while no phase is scheduled
    /// (SALES_ROLE). Emits `PriceChanged`.
    function setPrice(uint256 newPrice) external onlyRole(SALES_ROLE) {
        emit PriceChanged(_price, newPrice);
        _price = SafeCast.toUint128(newPrice);
    }

    /// @notice Schedules phase `phaseId` (SALES_ROLE): `phaseCount()` appends one, a lower id
    /// replaces a phase that has not started. Phases run in id order and do not overlap.
    /// @dev Reverts `TooManyPhases`, `UnknownPhase` (beyond the next id), `PhaseStarted`,
    /// `InvalidPhaseTimes` (end not after start, or already past), `InvalidPhasePrice` (a fixed
    /// price needs `floorPrice == price` and no drop; an auction a floor below its start price and a
    /// drop), `PhaseOutOfOrder` (overlaps the phase before or after). Emits `PhaseSet`.
    function setPhase(uint256 phaseId, Phase calldata newPhase) external onlyRole(SALES_ROLE) {
        _phaseCount = uint64(SaleRules.setPhase(_phases, _phaseCount, phaseId, newPhase));
        emit PhaseSet(phaseId, newPhase);
    }

    /// @notice Removes the last phase before it starts (SALES_ROLE). Reverts `UnknownPhase` when
    /// there is none, `PhaseStarted`. Emits `PhaseDropped`.
    function dropLastPhase() external onlyRole(SALES_ROLE) {
        uint256 phaseId = SaleRules.dropLastPhase(_phases, _phaseCount);
        _phaseCount = uint64(phaseId);
        emit PhaseDropped(phaseId);
    }

    /// @notice Account that `withdraw` sends proceeds to.
    function payee() external view returns (address) {
        return _payee;
    }

    /// @notice Sets the payee (admin only, non-zero). Emits `PayeeChanged`.
    function setPayee(address newPayee) external onlyRole(DEFAULT_ADMIN_ROLE) {
        if (newPayee == address(0)) revert ZeroAddress();
        emit PayeeChanged(_payee, newPayee);
        _payee = newPayee;
    }

    /// @notice Sends the proceeds to `payee()` (SALES_ROLE; only the admin chooses the payee) with OpenZeppelin `Address.sendValue`,
    /// which forwards all gas and reverts (bubbling the payee's reason, else `FailedCall`) on failure.
    /// The proceeds are the balance less what Dutch auction buyers may still claim back: while an
    /// auction runs, everything paid above its floor (the clearing price cannot fall below it);
    /// once it has ended, everything paid above the clearing price and not yet claimed.
    /// @dev Reverts `NothingToWithdraw` when there is nothing to send. Emits `Withdrawn`.
    function withdraw() external onlyRole(SALES_ROLE) {
        uint256 amount = withdrawable();
        if (amount == 0) revert NothingToWithdraw();
        address to = _payee;
        emit Withdrawn(to, amount);
        Address.sendValue(payable(to), amount);
    }

    /// @notice What `withdraw` would send now.
    function withdrawable() public view returns (uint256) {
        return address(this).balance - _refundsOwed();
    }

    /// @notice Sets the ERC-2981 default royalty (admin only); `feeNumerator` is in basis points.
    function setDefaultRoyalty(address receiver, uint96 feeNumerator) external onlyRole(DEFAULT_ADMIN_ROLE) {
        _setDefaultRoyalty(receiver, feeNumerator);
        emit DefaultRoyaltyChanged(receiver, feeNumerator);
    }

    /// @notice ERC-165: ERC-165, ERC-721, ERC-721 Metadata, ERC-2981, ERC-4906 and AccessControl.
    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721A, ERC2981, AccessControl)
        returns (bool)
    {
        return interfaceId == _ERC4906_INTERFACE_ID || ERC721A.supportsInterface(interfaceId)
            || ERC2981.supportsInterface(interfaceId) || AccessControl.supportsInterface(interfaceId);
    }

    // ---------------------------------------------------------------- internals

    function _startTokenId() internal pure override returns (uint256) {
        return 1;
    }

    function _isKnown(uint256 tokenId) private view returns (bool) {
        // Tokens are never burned, so every id in [1, nextTokenId) exists.
        return tokenId >= _startTokenId() && tokenId < _nextTokenId();
    }

    function _requireKnown(uint256 tokenId) private view {
        if (!_isKnown(tokenId)) revert UnknownToken(tokenId);
    }

    function _mintBatch(address to, uint256 quantity) private {
        _batches[_nextTokenId()] = block.number | (quantity << _QUANTITY_SHIFT);
        _mint(to, quantity);
    }

    /// @dev Quantity, supply (the unminted reserve is not for sale) and the collection-wide wallet cap.
    function _checkQuantity(uint256 quantity) private view {
        if (quantity == 0) revert ZeroQuantity();
        if (quantity > _maxPerTx) revert TooManyPerTransaction(quantity, _maxPerTx);
        uint256 remaining = saleRemaining();
        if (quantity > remaining) revert SoldOut(quantity, remaining);
        if (_maxPerWallet != 0) {
            uint256 minted = _numberMinted(msg.sender);
            uint256 walletRemaining = minted >= _maxPerWallet ? 0 : _maxPerWallet - minted;
            if (quantity > walletRemaining) revert WalletCapExceeded(quantity, walletRemaining);
        }
    }

    /// @dev A mint in open phase `phaseId`, the caller limited to `cap` tokens in the phase
    /// (type(uint256).max: no limit). A fixed-price phase counts the caller's tokens in ERC721A's
    /// per-owner aux field (phaseId + 1 << 32 | count), which shares the slot the mint writes anyway;
    /// an auction records the caller's payment for the settlement.
    function _phaseMint(uint256 phaseId, Phase storage phase, uint256 quantity, uint256 cap) private {
        _checkQuantity(quantity);
        uint256 unit = _priceAt(phase, block.timestamp);
        uint256 expected = unit * quantity;
        if (phase.stepSeconds == 0) {
            if (cap != type(uint256).max) {
                uint64 aux = _getAux(msg.sender);
                uint256 minted = aux >> 32 == phaseId + 1 ? uint32(aux) : 0;
                uint256 left = minted >= cap ? 0 : cap - minted;
                if (quantity > left) revert PhaseCapExceeded(phaseId, quantity, left);
                _setAux(msg.sender, uint64(((phaseId + 1) << 32) | (minted + quantity)));
            }
            if (msg.value != expected) revert WrongPayment(msg.value, expected);
        } else {
            Purchase storage purchase = _purchases[phaseId][msg.sender];
            uint256 bought = purchase.bought;
            uint256 left = bought >= cap ? 0 : cap - bought;
            if (quantity > left) revert PhaseCapExceeded(phaseId, quantity, left);
            if (msg.value < expected) revert WrongPayment(msg.value, expected);
            purchase.paid += SafeCast.toUint128(msg.value);
            purchase.bought = uint64(bought + quantity);
            Sales storage sales = _sales[phaseId];
            sales.paid += uint128(msg.value);
            sales.sold += uint64(quantity);
            sales.clearingPrice = uint128(unit);
        }
        _mintBatch(msg.sender, quantity);
    }

    /// @dev 0: no phase scheduled; 1: phase `phaseId` is open; 2: none open, the next starts at
    /// `phaseId`'s start (phaseId == count: none left).
    function _findPhase() private view returns (uint256 state, uint256 phaseId) {
        uint256 count = _phaseCount;
        if (count == 0) return (0, 0);
        for (; phaseId < count; ++phaseId) {
            Phase storage p = _phases[phaseId];
            if (block.timestamp < p.start) return (2, phaseId);
            if (block.timestamp < p.end) return (1, phaseId);
        }
        return (2, count);
    }

    /// @dev The open phase for a mint: (false, 0) when no phase is scheduled (the base price sells);
    /// reverts `ConfigNotFrozen`, or `SaleNotOpen` when phases are scheduled and none is open.
    function _openPhase() private view returns (bool phased, uint256 phaseId) {
        if (_configDigest == bytes32(0)) revert ConfigNotFrozen();
        uint256 state;
        (state, phaseId) = _findPhase();
        if (state == 2) revert SaleNotOpen(phaseId < _phaseCount ? _phases[phaseId].start : 0);
        return (state == 1, phaseId);
    }

    /// @dev A phase's price per token at `timestamp`: fixed, or the auction's step at that time.
    function _priceAt(Phase storage phase, uint256 timestamp) private view returns (uint256) {
        uint256 start = phase.start;
        uint256 startPrice = phase.price;
        if (phase.stepSeconds == 0 || timestamp <= start) return startPrice;
        uint256 drop = ((timestamp - start) / phase.stepSeconds) * phase.dropPerStep;
        uint256 floor = phase.floorPrice;
        return drop >= startPrice - floor ? floor : startPrice - drop;
    }

    /// @dev What Dutch auction buyers may still claim back (see `withdraw`), so a withdrawal never
    /// takes wei a buyer is owed.
    function _refundsOwed() private view returns (uint256) {
        return SaleRules.refundsOwed(_phases, _sales, _phaseCount, saleRemaining() == 0);
    }

    /// @dev The batch holding a known `tokenId`: scans back to the nearest recorded batch start (at
    /// most maxPerTx - 1 slots).
    function _batchOf(uint256 tokenId) private view returns (uint256 start, uint256 packed) {
        start = tokenId;
        while ((packed = _batches[start]) == 0) {
            unchecked {
                --start;
            }
        }
    }

    /// @dev `commitSeeds` of a VRF collection: one request for every batch named that has none yet
    /// (each needs its mint block finished), then each batch records the request id.
    function _requestSeeds(uint256[] calldata tokenIds) private {
        uint256 n = tokenIds.length;
        uint256[] memory starts = new uint256[](n);
        uint256[] memory ends = new uint256[](n);
        uint256 count;
        for (uint256 i = 0; i < n; ++i) {
            uint256 tokenId = tokenIds[i];
            _requireKnown(tokenId);
            (uint256 start, uint256 packed) = _batchOf(tokenId);
            if (_contains(starts, count, start)) continue;
            if (packed >> _SOURCE_SHIFT != SEED_SOURCE_NONE) revert SeedAlreadyCommitted(tokenId);
            if ((packed & _MINT_BLOCK_MASK) >= block.number) revert MintBlockNotFinished(tokenId);
            starts[count] = start;
            ends[count++] = start + ((packed >> _QUANTITY_SHIFT) & _QUANTITY_MASK);
        }
        uint256 requestId = IVRFCoordinatorV2Plus(_vrfCoordinator).requestRandomWords(
            VRFV2PlusClient.RandomWordsRequest({
                keyHash: _vrfKeyHash,
                subId: _vrfSubscriptionId,
                requestConfirmations: _vrfRequestConfirmations,
                callbackGasLimit: _vrfCallbackGasLimit,
                numWords: 1,
                extraArgs: VRFV2PlusClient._argsToBytes(VRFV2PlusClient.ExtraArgsV1({nativePayment: _vrfNativePayment}))
            })
        );
        for (uint256 i = 0; i < count; ++i) {
            uint256 start = starts[i];
            _batchBlockHash[start] = bytes32(requestId);
            _batches[start] |= uint256(SEED_SOURCE_VRF) << _SOURCE_SHIFT;
            emit SeedsRequested(requestId, start, ends[i] - 1);
        }
    }

    /// @dev The finished block whose hash seeds the batch `packed`; reverts `MintBlockNotFinished` or
    /// `SeedBlockNotReached` while it is the current block or a later one.
    function _seedBlock(uint256 tokenId, uint256 packed) private view returns (uint256 seedBlock) {
        seedBlock = (packed & _MINT_BLOCK_MASK) + _seedDelay;
        if (seedBlock >= block.number) {
            if (_seedDelay == 0) revert MintBlockNotFinished(tokenId);
            revert SeedBlockNotReached(tokenId, seedBlock);
        }
    }

    function _commitBatch(uint256 start, uint256 end, uint256 packed, bytes32 blockHash, uint8 source) private {
        if (_seedDelay != 0) source += _FUTURE_OFFSET; // future-block seeds name themselves
        _batchBlockHash[start] = blockHash;
        _batches[start] = packed | (uint256(source) << _SOURCE_SHIFT);
        for (uint256 tokenId = start; tokenId < end; ++tokenId) {
            emit SeedCommitted(tokenId, _seed(blockHash, tokenId));
        }
    }

    function _seed(bytes32 blockHash, uint256 tokenId) private pure returns (bytes32) {
        return keccak256(abi.encodePacked(blockHash, tokenId));
    }

    function _contains(uint256[] memory values, uint256 count, uint256 value) private pure returns (bool) {
        for (uint256 i = 0; i < count; ++i) {
            if (values[i] == value) return true;
        }
        return false;
    }

    /// @dev The hash of `blockNumber` from the EIP-2935 history contract, or 0x0 when the chain has no
    /// such contract (no code, or code other than EIP-2935's), the call fails (out of its window) or it
    /// does not answer 32 bytes.
    function _historyBlockHash(uint256 blockNumber) private view returns (bytes32 blockHash) {
        if (HISTORY_STORAGE.codehash != _HISTORY_CODEHASH) return bytes32(0);
        address history = HISTORY_STORAGE;
        assembly ("memory-safe") {
            mstore(0x00, blockNumber)
            let ok := staticcall(gas(), history, 0x00, 0x20, 0x00, 0x20)
            if and(ok, eq(returndatasize(), 0x20)) { blockHash := mload(0x00) }
        }
    }
}
