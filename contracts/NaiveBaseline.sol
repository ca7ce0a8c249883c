// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {ERC721URIStorage} from "@openzeppelin/contracts/token/ERC721/extensions/ERC721URIStorage.sol";
import {AccessControl} from "@openzeppelin/contracts/access/AccessControl.sol";

/// @title NaiveBaseline
/// @notice The usual way to build a mint-on-demand collection, kept only as the gas benchmark's
/// baseline (`python -m chain.gas_benchmark`); never deploy it. OpenZeppelin `ERC721URIStorage`;
/// `mint` loops `_mint` and stores a mint block per token; `commitSeeds` stores one seed per token;
/// `publish` stores each token's full "ipfs://" URI string with `_setTokenURI`.
contract NaiveBaseline is ERC721URIStorage, AccessControl {
    bytes32 public constant SEED_COMMITTER_ROLE = keccak256("SEED_COMMITTER_ROLE");
    bytes32 public constant PUBLISHER_ROLE = keccak256("PUBLISHER_ROLE");

    uint256 public immutable price;
    uint256 public immutable maxSupply;
    uint256 public totalSupply;

    mapping(uint256 tokenId => uint256) public mintBlockOf;
    mapping(uint256 tokenId => bytes32) public seedOf;

    event SeedCommitted(uint256 indexed tokenId, bytes32 seed);

    error WrongPayment(uint256 sent, uint256 expected);
    error SoldOut(uint256 requested, uint256 remaining);
    error UnknownToken(uint256 tokenId);
    error SeedAlreadyCommitted(uint256 tokenId);
    error SeedWindowExpired(uint256 tokenId);
    error SeedNotCommitted(uint256 tokenId);
    error LengthMismatch();

    /// @param admin Receives DEFAULT_ADMIN_ROLE, SEED_COMMITTER_ROLE and PUBLISHER_ROLE.
    constructor(string memory name_, string memory symbol_, uint256 price_, uint256 maxSupply_, address admin)
        ERC721(name_, symbol_)
    {
        price = price_;
        maxSupply = maxSupply_;
        _grantRole(DEFAULT_ADMIN_ROLE, admin);
        _grantRole(SEED_COMMITTER_ROLE, admin);
        _grantRole(PUBLISHER_ROLE, admin);
    }

    /// @notice Mints `quantity` tokens (ids from 1) to the caller for exactly `price * quantity`.
    function mint(uint256 quantity) external payable {
        uint256 minted = totalSupply;
        if (quantity > maxSupply - minted) revert SoldOut(quantity, maxSupply - minted);
        if (msg.value != price * quantity) revert WrongPayment(msg.value, price * quantity);
        totalSupply = minted + quantity;
        for (uint256 i = 1; i <= quantity; ++i) {
            mintBlockOf[minted + i] = block.number;
            _mint(msg.sender, minted + i);
        }
    }

    /// @notice Stores keccak256(abi.encodePacked(blockhash(mintBlock), tokenId)) for each token.
    function commitSeeds(uint256[] calldata tokenIds) external onlyRole(SEED_COMMITTER_ROLE) {
        for (uint256 i = 0; i < tokenIds.length; ++i) {
            uint256 tokenId = tokenIds[i];
            uint256 mintBlock = mintBlockOf[tokenId];
            if (mintBlock == 0) revert UnknownToken(tokenId);
            if (seedOf[tokenId] != bytes32(0)) revert SeedAlreadyCommitted(tokenId);
            bytes32 blockHash = blockhash(mintBlock);
            if (blockHash == bytes32(0)) revert SeedWindowExpired(tokenId);
            bytes32 seed = keccak256(abi.encodePacked(blockHash, tokenId));
            seedOf[tokenId] = seed;
            emit SeedCommitted(tokenId, seed);
        }
    }

    /// @notice Stores each token's full metadata URI ("ipfs://..."); emits `MetadataUpdate` per token.
    function publish(uint256[] calldata tokenIds, string[] calldata uris) external onlyRole(PUBLISHER_ROLE) {
        if (tokenIds.length != uris.length) revert LengthMismatch();
        for (uint256 i = 0; i < tokenIds.length; ++i) {
            if (seedOf[tokenIds[i]] == bytes32(0)) revert SeedNotCommitted(tokenIds[i]);
            _setTokenURI(tokenIds[i], uris[i]);
        }
    }

    /// @notice ERC-165 for ERC-721, ERC-4906 and AccessControl.
    function supportsInterface(bytes4 interfaceId)
        public
        view
        override(ERC721URIStorage, AccessControl)
        returns (bool)
    {
        return super.supportsInterface(interfaceId);
    }

    /// @notice The token's stored URI.
    function tokenURI(uint256 tokenId) public view override returns (string memory) {
        return super.tokenURI(tokenId);
    }
}
