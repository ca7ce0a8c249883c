// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

error TooManyPhases();
error UnknownPhase(uint256 phaseId);
error PhaseStarted(uint256 phaseId);
error InvalidPhaseTimes(uint256 phaseId);
error InvalidPhasePrice(uint256 phaseId);
error PhaseOutOfOrder(uint256 phaseId);
error NotAnAuction(uint256 phaseId);
error AuctionNotEnded(uint256 phaseId, uint256 end);
error NothingToClaim(address account);

/// @notice A sale phase: from `start` (inclusive) to `end` (exclusive), unix seconds. A fixed
/// price has `stepSeconds` 0 and `floorPrice == price`; a Dutch auction starts at `price` and
/// falls by `dropPerStep` every `stepSeconds` to `floorPrice`. `maxPerWallet` 0: no cap in the
/// phase. `merkleRoot` set: only the allowlist's addresses, each up to its allowance.
struct Phase {
    uint64 start;
    uint64 end;
    uint64 stepSeconds;
    uint32 maxPerWallet;
    uint128 price;
    uint128 floorPrice;
    uint128 dropPerStep;
    bytes32 merkleRoot;
}

/// @dev A Dutch auction phase's takings: what buyers paid, what was refunded, the price of the
/// last sale (the clearing price once the phase ends) and how many tokens it sold.
struct Sales {
    uint128 paid;
    uint128 refunded;
    uint128 clearingPrice;
    uint64 sold;
}

/// @dev One buyer's purchases in one Dutch auction phase.
struct Purchase {
    uint128 paid;
    uint64 bought;
}


/// @title SaleRules
/// @notice The cold paths of MintOnDemand's sales and token URIs, in a linked library so the
/// collection stays under the EIP-170 code size limit (24,576 bytes): a phase's validation, what
/// Dutch auction buyers may still claim back, and the CID text of a metadata digest. Called with
/// DELEGATECALL from the collection, so its storage is the collection's.
library SaleRules {
    /// @dev CIDv1 prefix: version 1, raw codec 0x55, sha2-256 multihash (0x12) of 32 bytes (0x20).
    bytes4 private constant _CID_PREFIX = 0x01551220;
    bytes private constant _BASE32_ALPHABET = "abcdefghijklmnopqrstuvwxyz234567";
    uint256 private constant _MAX_PHASES = 16;

    /// @notice Stores `newPhase` as phase `phaseId` of `count` scheduled phases and returns the new
    /// count, or reverts `TooManyPhases`, `UnknownPhase`, `PhaseStarted`, `InvalidPhaseTimes`,
    /// `InvalidPhasePrice`, `PhaseOutOfOrder` (see `MintOnDemand.setPhase`).
    function setPhase(
        mapping(uint256 => Phase) storage _phases,
        uint256 count,
        uint256 phaseId,
        Phase calldata newPhase
    ) external returns (uint256) {
        if (phaseId == count && count == _MAX_PHASES) revert TooManyPhases();
        if (phaseId > count) revert UnknownPhase(phaseId);
        if (phaseId < count && _phases[phaseId].start <= block.timestamp) revert PhaseStarted(phaseId);
        if (newPhase.end <= newPhase.start || newPhase.end <= block.timestamp) revert InvalidPhaseTimes(phaseId);
        bool fixedPrice = newPhase.stepSeconds == 0;
        if (
            fixedPrice
                ? newPhase.floorPrice != newPhase.price || newPhase.dropPerStep != 0
                : newPhase.floorPrice >= newPhase.price || newPhase.dropPerStep == 0
        ) revert InvalidPhasePrice(phaseId);
        if (phaseId > 0 && newPhase.start < _phases[phaseId - 1].end) revert PhaseOutOfOrder(phaseId);
        if (phaseId + 1 < count && newPhase.end > _phases[phaseId + 1].start) revert PhaseOutOfOrder(phaseId);
        _phases[phaseId] = newPhase;
        return phaseId == count ? count + 1 : count;
    }

    /// @notice Removes the last of `count` phases before it starts and returns its id; reverts
    /// `UnknownPhase` when there is none, `PhaseStarted`.
    function dropLastPhase(mapping(uint256 => Phase) storage _phases, uint256 count) external returns (uint256) {
        if (count == 0) revert UnknownPhase(0);
        uint256 phaseId = count - 1;
        if (_phases[phaseId].start <= block.timestamp) revert PhaseStarted(phaseId);
        delete _phases[phaseId];
        return phaseId;
    }

    /// @notice Settles `msg.sender`'s purchases in Dutch auction `phaseId` and returns the refund
    /// due (the caller sends it); reverts `NotAnAuction`, `AuctionNotEnded` (neither past its end nor
    /// `soldOut`), `NothingToClaim`.
    function claimRefund(
        mapping(uint256 => Phase) storage _phases,
        mapping(uint256 => Sales) storage _sales,
        mapping(uint256 => mapping(address => Purchase)) storage _purchases,
        uint256 phaseId,
        bool soldOut
    ) external returns (uint256 due) {
        Phase storage phase = _phases[phaseId];
        if (phase.stepSeconds == 0) revert NotAnAuction(phaseId);
        if (!soldOut && block.timestamp < phase.end) revert AuctionNotEnded(phaseId, phase.end);
        due = refundOf(_sales, _purchases, phaseId, msg.sender);
        if (due == 0) revert NothingToClaim(msg.sender);
        _purchases[phaseId][msg.sender].paid -= uint128(due);
        _sales[phaseId].refunded += uint128(due);
    }

    /// @notice What `buyer` paid in Dutch auction `phaseId` above the price of its last sale so far.
    function refundOf(
        mapping(uint256 => Sales) storage _sales,
        mapping(uint256 => mapping(address => Purchase)) storage _purchases,
        uint256 phaseId,
        address buyer
    ) public view returns (uint256) {
        Purchase storage purchase = _purchases[phaseId][buyer];
        return purchase.paid - uint256(purchase.bought) * _sales[phaseId].clearingPrice;
    }

    /// @notice Phase `phaseId` of `count`; reverts `UnknownPhase`.
    function scheduledPhase(mapping(uint256 => Phase) storage _phases, uint256 count, uint256 phaseId)
        external
        view
        returns (Phase memory)
    {
        if (phaseId >= count) revert UnknownPhase(phaseId);
        return _phases[phaseId];
    }

    /// @notice What Dutch auction buyers may still claim back: while an auction runs, everything
    /// paid above its floor (the clearing price cannot fall below it); once it has ended (its end
    /// time passed, or `soldOut`), everything paid above the clearing price and not yet claimed.
    function refundsOwed(
        mapping(uint256 => Phase) storage _phases,
        mapping(uint256 => Sales) storage _sales,
        uint256 count,
        bool soldOut
    ) external view returns (uint256 owed) {
        for (uint256 phaseId = 0; phaseId < count; ++phaseId) {
            Phase storage phase = _phases[phaseId];
            if (phase.stepSeconds == 0) continue;
            Sales storage sales = _sales[phaseId];
            bool ended = soldOut || block.timestamp >= phase.end;
            owed += sales.paid - sales.refunded - uint256(sales.sold) * (ended ? sales.clearingPrice : phase.floorPrice);
        }
    }

    /// @dev Multibase base32 (lowercase RFC 4648, no padding, 'b' prefix) of 0x01551220 ‖ digest.
    function cidV1Base32(bytes32 digest) external pure returns (string memory) {
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
