//! Everything abi_stable-specific: the `#[repr(C)]` mirrors of the SDK's
//! types, the `#[sabi_trait]` objects, the root module and the conversions
//! between them. Plugin authors never see it (it is hidden from the docs);
//! the export macros and `keygate-sdk-host` use it. This module is what
//! would change if the ABI layer were replaced.

pub mod approval;
pub mod batch;
pub mod context;
pub mod error;
pub mod module;
pub mod registry;
pub mod shape;
pub mod store;
pub mod transport;
pub mod watch;

/// `RVec<RVec<u8>>` from `&[Vec<u8>]` (certificate chains).
pub(crate) fn to_abi_chain(
    chain: &[Vec<u8>],
) -> abi_stable::std_types::RVec<abi_stable::std_types::RVec<u8>> {
    chain.iter().map(|c| c.as_slice().into()).collect()
}

/// `Vec<Vec<u8>>` from `RVec<RVec<u8>>`.
pub(crate) fn from_abi_chain(
    chain: abi_stable::std_types::RVec<abi_stable::std_types::RVec<u8>>,
) -> Vec<Vec<u8>> {
    chain.into_iter().map(|c| c.into_vec()).collect()
}
