// SPDX-License-Identifier: MIT
pragma solidity ^0.8.24;

import {Address} from "@openzeppelin/contracts/utils/Address.sol";

/// @title PaymentSplit
/// @notice Splits every payment it receives (a collection's withdrawn proceeds, ERC-2981 royalties)
/// among payees fixed at deployment, in basis points, and pays each payee on request (pull
/// payment: a payee that refuses ether holds up only its own share). To change a split, deploy a
/// new one and point the collection's `payee` and royalty receiver at it.
/// @dev The accounting of OpenZeppelin v4's `PaymentSplitter` (removed from v5): a payee's due is
/// its share of everything ever received (balance + released) less what it was already paid.
contract PaymentSplit {
    /// @notice Shares are basis points of this total.
    uint256 public constant TOTAL_SHARES = 10_000;
    /// @notice At most this many payees.
    uint256 public constant MAX_PAYEES = 16;

    address[] private _payees;
    mapping(address payee => uint256) private _shares;
    mapping(address payee => uint256) private _released;
    uint256 private _totalReleased;

    /// @notice The split, at deployment.
    event SplitCreated(address[] payees, uint256[] shares);
    /// @notice The split received `amount` wei from `from`.
    event PaymentReceived(address from, uint256 amount);
    /// @notice `amount` wei were paid to `payee`, its share.
    event PaymentReleased(address indexed payee, uint256 amount);

    /// @notice Empty, over `MAX_PAYEES`, lengths that differ, a zero address, a zero share, a payee
    /// named twice, or shares that do not sum to 10,000.
    error InvalidSplit();
    /// @notice `account` has nothing due (not a payee, or already paid everything).
    error NothingToRelease(address account);

    /// @param payees Who is paid; `shares[i]` is `payees[i]`'s share in basis points.
    constructor(address[] memory payees, uint256[] memory shares) {
        uint256 n = payees.length;
        if (n == 0 || n > MAX_PAYEES || n != shares.length) revert InvalidSplit();
        uint256 total;
        for (uint256 i = 0; i < n; ++i) {
            address payee = payees[i];
            uint256 share = shares[i];
            if (payee == address(0) || share == 0 || _shares[payee] != 0) revert InvalidSplit();
            _shares[payee] = share;
            _payees.push(payee);
            total += share;
        }
        if (total != TOTAL_SHARES) revert InvalidSplit();
        emit SplitCreated(payees, shares);
    }

    /// @notice Takes proceeds and royalties. Emits `PaymentReceived`.
    receive() external payable {
        emit PaymentReceived(msg.sender, msg.value);
    }

    /// @notice The payees and their shares in basis points.
    function split() external view returns (address[] memory payees, uint256[] memory shares) {
        payees = _payees;
        shares = new uint256[](payees.length);
        for (uint256 i = 0; i < payees.length; ++i) {
            shares[i] = _shares[payees[i]];
        }
    }

    /// @notice Wei paid to `account` so far.
    function released(address account) external view returns (uint256) {
        return _released[account];
    }

    /// @notice Wei paid to all payees so far.
    function totalReleased() external view returns (uint256) {
        return _totalReleased;
    }

    /// @notice Wei due to `account` now.
    function releasable(address account) public view returns (uint256) {
        uint256 received = address(this).balance + _totalReleased;
        return received * _shares[account] / TOTAL_SHARES - _released[account];
    }

    /// @notice Pays `account` what is due to it (anyone may call; the ether goes to `account`) with
    /// OpenZeppelin `Address.sendValue`, which reverts on failure, bubbling the reason.
    /// @dev Reverts `NothingToRelease`. Emits `PaymentReleased`.
    function release(address payable account) external {
        uint256 amount = releasable(account);
        if (amount == 0) revert NothingToRelease(account);
        _released[account] += amount;
        _totalReleased += amount;
        emit PaymentReleased(account, amount);
        Address.sendValue(account, amount);
    }
}
