// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";
import {IERC165} from "@openzeppelin/contracts/utils/introspection/IERC165.sol";
import {IERC4906} from "@openzeppelin/contracts/interfaces/IERC4906.sol";

/// @title MintOnDemand
/// @notice ERC-721 collection minted on demand. Each token's seed is derived on-chain from the hash
/// of the block that included its mint, so neither the minter nor the operator can choose it. The
/// operator later publishes the sha256 of the token's metadata; `tokenURI` is the matching IPFS CIDv1.
/// @dev Seeds can only be committed while `blockhash(mintBlock)` is available (256 blocks). The
/// documented late fallback (EIP-2935 history, or an explicit evented late commit) is future work;
/// until then `commitSeeds` reverts with `SeedWindowExpired`.
contract MintOnDemand is IERC4906, ERC721, AccessControl {
    /// @notice Role allowed to trigger `commitSeeds`.
    bytes32 public constant SEED_COMMITTER_ROLE = keccak256("SEED_COMMITTER_ROLE");
    /// @notice Role allowed to `publish` metadata digests.
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    bytes4 private constant _ERC4906_INTERFACE_ID = 0x49064906;
    /// @dev CIDv1 prefix: version 1, raw codec 0x55, sha2-256 multihash (0x12) of 32 bytes (0x20).
    bytes4 private constant _CID_PREFIX = 0x01551220;
    bytes private constant _BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";

    uint256 private immutable _price;
    uint256 private immutable _maxSupply;
    uint256 private _totalMinted;

    mapping(uint256 tokenId => uint256) private _mintBlock;
    mapping(uint256 tokenId => bytes32) private _seed;
    mapping(uint256 tokenId => bytes32) private _metadataDigest;

    /// @notice Emitted once per token when its seed is committed.
    event SeedCommitted(uint256 indexed tokenId, bytes32 seed);

    error WrongPayment(uint256 sent, uint256 expected);
    error ZeroQuantity();
    error SoldOut(uint256 requested, uint256 remaining);
    error UnknownToken(uint256 tokenId);
    error SeedAlreadyCommitted(uint256 tokenId);
    error MintBlockNotFinished(uint256 tokenId);
    error SeedWindowExpired(uint256 tokenId, uint256 mintBlock);
    error LengthMismatch();
    error SeedNotCommitted(uint256 tokenId);
    error AlreadyPublished(uint256 tokenId);
    error EmptyDigest(uint256 tokenId);
    error WithdrawFailed();

    /// @param name_ Collection name.
    /// @param symbol_ Collection symbol.
    /// @param price_ Price per token in wei.
    /// @param maxSupply_ Maximum number of tokens that can ever be minted.
    /// @param admin Receives DEFAULT_ADMIN_ROLE, SEED_COMMITTER_ROLE and PUBLISHER_ROLE.
    constructor(string memory name_, string memory symbol_, uint256 price_, uint256 maxSupply_, address admin)
        ERC721(name_, symbol_)
    {
        _price = price_;
        _maxSupply = maxSupply_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SEED_COMMITTER_ROLE, admin);
        _grantRole(PUBLISHER_ROLE, admin);
    }

    /// @notice Mints `quantity` tokens to the caller with sequential ids starting at 1.
    /// @dev Requires `msg.value == price() * quantity` exactly.
    function mint(uint256 quantity) external payable {
        if (quantity == 0) revert ZeroQuantity();
        uint256 minted = _totalMinted;
        uint256 remaining = _maxSupply - minted;
        if (quantity > remaining) revert SoldOut(quantity, remaining);
        uint256 expected = _price * quantity;
        if (msg.value != expected) revert WrongPayment(msg.value, expected);

        _totalMinted = minted + quantity;
        for (uint256 i = 1; i <= quantity; ++i) {
            uint256 tokenId = minted + i;
            _mintBlock[tokenId] = block.number;
            _mint(msg.sender, tokenId);
        }
    }

    /// @notice Price per token in wei.
    function price() external view returns (uint256) {
        return _price;
    }

    /// @notice Maximum number of tokens.
    function maxSupply() external view returns (uint256) {
        return _maxSupply;
    }

    /// @notice Number of tokens minted so far (tokens are never burned).
    function totalSupply() external view returns (uint256) {
        return _totalMinted;
    }

    /// @notice Block number of the block that included the token's mint.
    function mintBlockOf(uint256 tokenId) external view returns (uint256) {
        _requireMinted(tokenId);
        return _mintBlock[tokenId];
    }

    /// @notice The token's seed, or 0x0 until committed.
    function seedOf(uint256 tokenId) external view returns (bytes32) {
        return _seed[tokenId];
    }

    /// @notice sha256 of the token's metadata bytes, or 0x0 until published.
    function metadataDigestOf(uint256 tokenId) external view returns (bytes32) {
        return _metadataDigest[tokenId];
    }

    /// @notice Commits each token's seed: keccak256(abi.encodePacked(blockhash(mintBlock), tokenId)).
    /// @dev Write-once. The mint block must be finished and still inside the 256-block blockhash window.
    function commitSeeds(uint256[] calldata tokenIds) external onlyRole(SEED_COMMITTER_ROLE) {
        for (uint256 i = 0; i < tokenIds.length; ++i) {
            uint256 tokenId = tokenIds[i];
            _requireMinted(tokenId);
            if (_seed[tokenId] != bytes32(0)) revert SeedAlreadyCommitted(tokenId);
            uint256 mintBlock = _mintBlock[tokenId];
            if (mintBlock >= block.number) revert MintBlockNotFinished(tokenId);
            bytes32 mintBlockHash = blockhash(mintBlock);
            if (mintBlockHash == bytes32(0)) revert SeedWindowExpired(tokenId, mintBlock);
            bytes32 seed = keccak256(abi.encodePacked(mintBlockHash, tokenId));
            _seed[tokenId] = seed;
            emit SeedCommitted(tokenId, seed);
        }
    }

    /// @notice Publishes the sha256 digest of each token's metadata (write-once) and emits ERC-4906 events.
    /// @param tokenIds Tokens whose seeds are committed.
    /// @param metadataSha256 sha256 of each token's canonical metadata bytes, same order as `tokenIds`.
    function publish(uint256[] calldata tokenIds, bytes32[] calldata metadataSha256)
        external
        onlyRole(PUBLISHER_ROLE)
    {
        if (tokenIds.length != metadataSha256.length) revert LengthMismatch();
        for (uint256 i = 0; i < tokenIds.length; ++i) {
            uint256 tokenId = tokenIds[i];
            bytes32 digest = metadataSha256[i];
            if (_seed[tokenId] == bytes32(0)) revert SeedNotCommitted(tokenId);
            if (_metadataDigest[tokenId] != bytes32(0)) revert AlreadyPublished(tokenId);
            if (digest == bytes32(0)) revert EmptyDigest(tokenId);
            _metadataDigest[tokenId] = digest;
            emit MetadataUpdate(tokenId);
        }
    }

    /// @notice "" before publication, then "ipfs://" + CIDv1 (raw codec, sha2-256, base32) of the metadata.
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        _requireOwned(tokenId);
        bytes32 digest = _metadataDigest[tokenId];
        if (digest == bytes32(0)) return "";
        return string.concat("ipfs://", _cidV1Base32(digest));
    }

    /// @notice Sends the whole contract balance to `to`.
    function withdraw(address payable to) external onlyRole(DEFAULT_ADMIN_ROLE) {
        (bool ok,) = to.call{value: address(this).balance}("");
        if (!ok) revert WithdrawFailed();
    }

    /// @inheritdoc IERC165
    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(IERC165, ERC721, AccessControl)
        returns (bool)
    {
        return interfaceId == _ERC4906_INTERFACE_ID || super.supportsInterface(interfaceId);
    }

    function _requireMinted(uint256 tokenId) private view {
        if (tokenId == 0 || tokenId > _totalMinted) revert UnknownToken(tokenId);
    }

    /// @dev Multibase base32 (lowercase RFC 4648, no padding, 'b' prefix) of 0x01551220 ‖ digest.
    function _cidV1Base32(bytes32 digest) private pure returns (string memory) {
        bytes memory data = abi.encodePacked(_CID_PREFIX, digest); // 36 bytes = 288 bits
        bytes memory out = new bytes(1 + (data.length * 8 + 4) / 5); // 'b' + 58 chars
        out[0] = "b";
        uint256 buffer;
        uint256 bits;
        uint256 j = 1;
        for (uint256 i = 0; i < data.length; ++i) {
            buffer = (buffer << 8) | uint8(data[i]);
            bits += 8;
            while (bits >= 5) {
                bits -= 5;
                out[j++] = _BASE32_ALPHABET[(buffer >> bits) & 31];
            }
        }
        if (bits > 0) {
            out[j] = _BASE32_ALPHABET[(buffer << (5 - bits)) & 31];
        }
        return string(out);
    }
}
