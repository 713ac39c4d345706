//! The macros a plugin crate declares its plugins with.

/// Exports the plugins of a `cdylib` so the Keygate host can load it by
/// path. Use it once, at the root of the crate:
///
/// ```ignore
/// keygate_sdk::export_plugins! {
///     stores: [SqliteStore: batch, ArchiveStore],
///     approvals: [AllowlistPolicy],
/// }
/// ```
///
/// Each type implements [`StorePlugin`](crate::StorePlugin),
/// [`ApprovalPlugin`](crate::ApprovalPlugin) or
/// [`TransportPlugin`](crate::TransportPlugin). Sections may be left out but
/// keep this order. The crate needs no `unsafe` and no dependency other than
/// `keygate-sdk`; every call into it is guarded so a panic comes back to the
/// host as an error.
///
/// # Store capabilities
/// A store type may be followed by `: batch`, `: watch` or
/// `: batch + watch` to export the [`BatchStore`](crate::BatchStore) and
/// [`WatchStore`](crate::WatchStore) capabilities with it (the type must
/// then implement the traits, or the crate does not compile). The host
/// receives the store and its capability objects around one shared
/// instance, built once. A store without a marker is exported exactly as
/// before, and the host treats it as having no capability even if the
/// type implements the traits. Any other word after `:` is a compile
/// error.
///
/// ```
/// # use keygate_sdk::*;
/// # struct MemoStore;
/// # impl SecretStore for MemoStore {
/// #     fn get(&self, _: &str) -> Result<Option<Versioned>, PluginError> { Ok(None) }
/// #     fn put(&self, _: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> { Ok(1) }
/// #     fn delete(&self, _: &str, _: Version) -> Result<(), PluginError> { Ok(()) }
/// #     fn list(&self, _: &str) -> Result<Vec<String>, PluginError> { Ok(vec![]) }
/// # }
/// # impl StorePlugin for MemoStore {
/// #     const NAME: &'static str = "memo";
/// #     const DESCRIPTION: &'static str = "";
/// #     fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> { Ok(Self) }
/// # }
/// # struct PlainStore;
/// # impl SecretStore for PlainStore {
/// #     fn get(&self, _: &str) -> Result<Option<Versioned>, PluginError> { Ok(None) }
/// #     fn put(&self, _: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> { Ok(1) }
/// #     fn delete(&self, _: &str, _: Version) -> Result<(), PluginError> { Ok(()) }
/// #     fn list(&self, _: &str) -> Result<Vec<String>, PluginError> { Ok(vec![]) }
/// # }
/// # impl StorePlugin for PlainStore {
/// #     const NAME: &'static str = "plain";
/// #     const DESCRIPTION: &'static str = "";
/// #     fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> { Ok(Self) }
/// # }
/// impl BatchStore for MemoStore {
///     fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
///         // All or nothing, under the store's write exclusion.
/// #       Ok(vec![None; ops.len()])
///     }
/// }
///
/// keygate_sdk::export_plugins! {
///     stores: [MemoStore: batch, PlainStore],
/// }
/// # fn main() {}
/// ```
///
/// A marker the SDK does not know, or `batch` on a store that does not
/// implement `BatchStore`, does not compile:
///
/// ```compile_fail
/// # use keygate_sdk::*;
/// # struct PlainStore;
/// # impl SecretStore for PlainStore {
/// #     fn get(&self, _: &str) -> Result<Option<Versioned>, PluginError> { Ok(None) }
/// #     fn put(&self, _: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> { Ok(1) }
/// #     fn delete(&self, _: &str, _: Version) -> Result<(), PluginError> { Ok(()) }
/// #     fn list(&self, _: &str) -> Result<Vec<String>, PluginError> { Ok(vec![]) }
/// # }
/// # impl StorePlugin for PlainStore {
/// #     const NAME: &'static str = "plain";
/// #     const DESCRIPTION: &'static str = "";
/// #     fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> { Ok(Self) }
/// # }
/// keygate_sdk::export_plugins! { stores: [PlainStore: batch] }
/// # fn main() {}
/// ```
///
/// ```compile_fail
/// # use keygate_sdk::*;
/// # struct MemoStore;
/// # impl SecretStore for MemoStore {
/// #     fn get(&self, _: &str) -> Result<Option<Versioned>, PluginError> { Ok(None) }
/// #     fn put(&self, _: &str, _: &[u8], _: Option<Version>) -> Result<Version, PluginError> { Ok(1) }
/// #     fn delete(&self, _: &str, _: Version) -> Result<(), PluginError> { Ok(()) }
/// #     fn list(&self, _: &str) -> Result<Vec<String>, PluginError> { Ok(vec![]) }
/// # }
/// # impl BatchStore for MemoStore {
/// #     fn apply_batch(&self, ops: &[BatchOp]) -> Result<Vec<Option<Version>>, PluginError> {
/// #         Ok(vec![None; ops.len()])
/// #     }
/// # }
/// # impl StorePlugin for MemoStore {
/// #     const NAME: &'static str = "memo";
/// #     const DESCRIPTION: &'static str = "";
/// #     fn from_config(_: &str, _: PluginContext) -> Result<Self, PluginError> { Ok(Self) }
/// # }
/// keygate_sdk::export_plugins! { stores: [MemoStore: watch] }
/// # fn main() {}
/// ```
#[macro_export]
macro_rules! export_plugins {
    ($($body:tt)*) => {
        $crate::__keygate_library! { $($body)* }

        /// The library header the Keygate host looks up when it opens this
        /// file (the symbol name is abi_stable's, see
        /// `keygate_sdk::ROOT_MODULE_SYMBOL`).
        #[doc(hidden)]
        #[allow(non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static _1as_0lib_1header_0root_bmodule_bloader: $crate::__private::LibHeader = {
            extern "C" fn __keygate_erased_root() -> $crate::__private::RootModuleResult {
                $crate::__private::__call_root_module_loader(__keygate_plugin_library)
            }
            // SAFETY: `__keygate_erased_root` returns the module built by
            // `__keygate_plugin_library`, whose type is `PluginLibraryRef`,
            // the type the header is declared for.
            unsafe {
                $crate::__private::LibHeader::from_constructor::<$crate::__private::PluginLibraryRef>(
                    __keygate_erased_root,
                    $crate::__private::CheckTypeLayout::Yes,
                )
            }
        };
    };
}

/// Registers the plugins of a built-in crate (linked into the `keygate`
/// binary) with the host, through the same root module an external library
/// exports. Same syntax as [`export_plugins!`], store capabilities
/// (`stores: [MemoryStore: batch]`) included.
#[macro_export]
macro_rules! register_builtin_plugins {
    ($($body:tt)*) => {
        $crate::__keygate_library! { $($body)* }

        $crate::__private::inventory::submit! {
            $crate::__private::BuiltinLibrary::new(
                ::core::env!("CARGO_PKG_NAME"),
                __keygate_plugin_library,
            )
        }
    };
}

#[doc(hidden)]
#[macro_export]
macro_rules! __keygate_library {
    (
        $( stores: [ $($store:ty $(: $capability:ident $(+ $more:ident)*)?),* $(,)? ] $(,)? )?
        $( approvals: [ $($approval:ty),* $(,)? ] $(,)? )?
        $( transports: [ $($transport:ty),* $(,)? ] $(,)? )?
    ) => {
        #[doc(hidden)]
        fn __keygate_plugin_library() -> $crate::__private::PluginLibraryRef {
            use $crate::__private as __p;

            fn stores() -> ::std::vec::Vec<__p::Entry<__p::AbiWatchedParts>> {
                ::std::vec![$($( $crate::__keygate_store_entry!($store $(: $capability $(+ $more)*)?) ),*)?]
            }
            fn approvals() -> ::std::vec::Vec<__p::Entry<__p::ApprovalBox>> {
                ::std::vec![$($( __p::approval_entry::<$approval>() ),*)?]
            }
            fn transports() -> ::std::vec::Vec<__p::Entry<__p::TransportBox>> {
                ::std::vec![$($( __p::transport_entry::<$transport>() ),*)?]
            }
            extern "C" fn manifest() -> __p::AbiLibraryManifest {
                __p::manifest_of(&stores(), &approvals(), &transports())
            }
            extern "C" fn new_store(
                name: __p::RStr<'_>,
                config: __p::RStr<'_>,
                ctx: __p::AbiPluginContext,
            ) -> __p::AbiResult<__p::StoreBox> {
                __p::construct_store(&stores(), name, config, ctx)
            }
            extern "C" fn new_store_parts(
                name: __p::RStr<'_>,
                config: __p::RStr<'_>,
                ctx: __p::AbiPluginContext,
            ) -> __p::AbiResult<__p::AbiStoreParts> {
                __p::construct_store_parts(&stores(), name, config, ctx)
            }
            extern "C" fn new_store_watched(
                name: __p::RStr<'_>,
                config: __p::RStr<'_>,
                ctx: __p::AbiPluginContext,
            ) -> __p::AbiResult<__p::AbiWatchedParts> {
                __p::construct(__p::PluginKind::Store, &stores(), name, config, ctx)
            }
            extern "C" fn new_approval(
                name: __p::RStr<'_>,
                config: __p::RStr<'_>,
                ctx: __p::AbiPluginContext,
            ) -> __p::AbiResult<__p::ApprovalBox> {
                __p::construct(__p::PluginKind::Approval, &approvals(), name, config, ctx)
            }
            extern "C" fn new_transport(
                name: __p::RStr<'_>,
                config: __p::RStr<'_>,
                ctx: __p::AbiPluginContext,
            ) -> __p::AbiResult<__p::TransportBox> {
                __p::construct(__p::PluginKind::Transport, &transports(), name, config, ctx)
            }

            static LIBRARY: ::std::sync::OnceLock<__p::PluginLibraryRef> =
                ::std::sync::OnceLock::new();
            *LIBRARY.get_or_init(|| {
                __p::leak_library(__p::PluginLibrary {
                    manifest,
                    new_store,
                    new_approval,
                    new_transport,
                    new_store_parts,
                    new_store_watched,
                })
            })
        }
    };
}

/// One store's entry, by its capability marker.
#[doc(hidden)]
#[macro_export]
macro_rules! __keygate_store_entry {
    ($store:ty) => {
        $crate::__private::store_entry::<$store>()
    };
    ($store:ty : batch) => {
        $crate::__private::batch_store_entry::<$store>()
    };
    ($store:ty : watch) => {
        $crate::__private::watch_store_entry::<$store>()
    };
    ($store:ty : batch + watch) => {
        $crate::__private::batch_watch_store_entry::<$store>()
    };
    ($store:ty : watch + batch) => {
        $crate::__private::batch_watch_store_entry::<$store>()
    };
    ($store:ty : $first:ident $(+ $other:ident)*) => {
        ::core::compile_error!(::core::concat!(
            "unknown store capabilities `",
            ::core::stringify!($first $(+ $other)*),
            "`: the capabilities are `batch` and `watch` (`stores: [MyStore: batch + watch]`)"
        ))
    };
}
