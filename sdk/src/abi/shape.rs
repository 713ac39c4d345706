//! The shapes the root module has had, and the check that picks the one a
//! library was built with.
//!
//! abi_stable checks a library's root module against a type of the host's
//! and accepts a library whose prefix type has *more* fields than that
//! type (a newer library in an older host), never *fewer*. An SDK release
//! that appends a constructor therefore keeps the previous shape here,
//! frozen, and [`LibraryModule::init`] checks each library against the
//! newest shape that it has all the fields of.

use abi_stable::StableAbi;
use abi_stable::library::{LibHeader, LibraryError};
use abi_stable::std_types::RStr;
use abi_stable::type_layout::{TLData, TypeLayout};

use super::approval::ApprovalBox;
use super::batch::AbiStoreParts;
use super::context::AbiPluginContext;
use super::error::AbiResult;
use super::module::{AbiLibraryManifest, PluginLibraryRef};
use super::store::StoreBox;
use super::transport::TransportBox;
use super::watch::AbiWatchedParts;

/// The root module as keygate-sdk 0.2.0 declared it, frozen: the same type
/// name and package as [`PluginLibrary`](super::module::PluginLibrary), its
/// first four fields, `last_prefix_field` on `new_transport`. Never change
/// it.
pub mod v0_2_0 {
    use abi_stable::{
        StableAbi, declare_root_module_statics, library::RootModule, package_version_strings,
        sabi_types::VersionStrings, std_types::RStr,
    };

    use super::super::approval::ApprovalBox;
    use super::super::context::AbiPluginContext;
    use super::super::error::AbiResult;
    use super::super::module::AbiLibraryManifest;
    use super::super::store::StoreBox;
    use super::super::transport::TransportBox;

    /// The 0.2.0 root module.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginLibraryRef)))]
    #[sabi(missing_field(option))]
    pub struct PluginLibrary {
        /// The manifest.
        pub manifest: extern "C" fn() -> AbiLibraryManifest,
        /// Constructs the store plugin named `name`.
        pub new_store: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<StoreBox>,
        /// Constructs the approval plugin named `name`.
        pub new_approval: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<ApprovalBox>,
        /// Constructs the transport plugin named `name`.
        #[sabi(last_prefix_field)]
        pub new_transport: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<TransportBox>,
    }

    impl RootModule for PluginLibraryRef {
        declare_root_module_statics! {PluginLibraryRef}
        const BASE_NAME: &'static str = "keygate_plugin";
        const NAME: &'static str = "keygate_plugin";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }
}

/// The root module as it was once `new_store_parts` (the `batch`
/// capability) was appended and before `new_store_watched`, frozen: the
/// 0.2.0 fields and `new_store_parts`. Never change it.
pub mod batch {
    use abi_stable::{
        StableAbi, declare_root_module_statics, library::RootModule, package_version_strings,
        sabi_types::VersionStrings, std_types::RStr,
    };

    use super::super::approval::ApprovalBox;
    use super::super::batch::AbiStoreParts;
    use super::super::context::AbiPluginContext;
    use super::super::error::AbiResult;
    use super::super::module::AbiLibraryManifest;
    use super::super::store::StoreBox;
    use super::super::transport::TransportBox;

    /// The root module with `new_store_parts` as its last field.
    #[repr(C)]
    #[derive(StableAbi)]
    #[sabi(kind(Prefix(prefix_ref = PluginLibraryRef)))]
    #[sabi(missing_field(option))]
    pub struct PluginLibrary {
        /// The manifest.
        pub manifest: extern "C" fn() -> AbiLibraryManifest,
        /// Constructs the store plugin named `name`.
        pub new_store: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<StoreBox>,
        /// Constructs the approval plugin named `name`.
        pub new_approval: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<ApprovalBox>,
        /// Constructs the transport plugin named `name`.
        #[sabi(last_prefix_field)]
        pub new_transport: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<TransportBox>,
        /// Constructs the store plugin `name` with its batch object.
        pub new_store_parts: extern "C" fn(
            name: RStr<'_>,
            config: RStr<'_>,
            ctx: AbiPluginContext,
        ) -> AbiResult<AbiStoreParts>,
    }

    impl RootModule for PluginLibraryRef {
        declare_root_module_statics! {PluginLibraryRef}
        const BASE_NAME: &'static str = "keygate_plugin";
        const NAME: &'static str = "keygate_plugin";
        const VERSION_STRINGS: VersionStrings = package_version_strings!();
    }
}

/// How many fields the root-module prefix type described by `layout` (the
/// layout of a `PluginLibraryRef`, as a library header records it) has.
fn declared_fields(layout: &'static TypeLayout) -> Option<usize> {
    // The `_Ref` type is a `PrefixRef<PluginLibrary>`, whose one phantom
    // field is the prefix type itself.
    let prefix = layout.phantom_fields().iter().next()?.layout();
    match prefix.data() {
        TLData::PrefixType(prefix) => Some(prefix.fields.len()),
        _ => None,
    }
}

/// A library's root module, in the newest shape this SDK knows that the
/// library has all the fields of.
#[derive(Clone, Copy)]
pub enum LibraryModule {
    /// A library built with this SDK, or a newer compatible one.
    Current(PluginLibraryRef),
    /// A library built with `new_store_parts` but before
    /// `new_store_watched` (no `watch` capability).
    Batch(batch::PluginLibraryRef),
    /// A library built with keygate-sdk 0.2.0 (no `new_store_parts`).
    V0_2_0(v0_2_0::PluginLibraryRef),
}

impl From<PluginLibraryRef> for LibraryModule {
    fn from(module: PluginLibraryRef) -> Self {
        Self::Current(module)
    }
}

/// Calls `$method` on whichever shape `$module` is.
macro_rules! each_shape {
    ($module:expr, $m:ident => $body:expr) => {
        match $module {
            LibraryModule::Current($m) => $body,
            LibraryModule::Batch($m) => $body,
            LibraryModule::V0_2_0($m) => $body,
        }
    };
}

impl LibraryModule {
    /// Checks the library's SDK version and root-module layout and
    /// initialises its root module.
    ///
    /// Every 0.2 library has the 0.2.0 fields, so the library is checked
    /// against the 0.2.0 shape first: a library that is not a compatible
    /// Keygate plugin at all fails here, with the difference. A library
    /// that declares more fields is then checked against the newest shape
    /// it has every field of (the `batch` shape, or the current one), so
    /// its later constructors are checked before they are called; the
    /// accessors of fields it lacks answer `None`.
    pub fn init(header: &LibHeader) -> Result<Self, LibraryError> {
        let base = header.init_root_module::<v0_2_0::PluginLibraryRef>()?;
        let base_fields = declared_fields(<v0_2_0::PluginLibraryRef as StableAbi>::LAYOUT);
        let batch_fields = declared_fields(<batch::PluginLibraryRef as StableAbi>::LAYOUT);
        // Without a recorded layout (a library that opted out of the
        // check) nothing says the later fields exist.
        match header.layout().and_then(declared_fields) {
            Some(n) if Some(n) > batch_fields => Ok(Self::Current(
                header.init_root_module::<PluginLibraryRef>()?,
            )),
            Some(n) if Some(n) > base_fields => Ok(Self::Batch(
                header.init_root_module::<batch::PluginLibraryRef>()?,
            )),
            _ => Ok(Self::V0_2_0(base)),
        }
    }

    /// The manifest constructor.
    pub fn manifest(&self) -> extern "C" fn() -> AbiLibraryManifest {
        each_shape!(self, m => m.manifest())
    }

    /// The store constructor every library has.
    pub fn new_store(
        &self,
    ) -> extern "C" fn(RStr<'_>, RStr<'_>, AbiPluginContext) -> AbiResult<StoreBox> {
        each_shape!(self, m => m.new_store())
    }

    /// The approval constructor.
    pub fn new_approval(
        &self,
    ) -> extern "C" fn(RStr<'_>, RStr<'_>, AbiPluginContext) -> AbiResult<ApprovalBox> {
        each_shape!(self, m => m.new_approval())
    }

    /// The transport constructor.
    pub fn new_transport(
        &self,
    ) -> extern "C" fn(RStr<'_>, RStr<'_>, AbiPluginContext) -> AbiResult<TransportBox> {
        each_shape!(self, m => m.new_transport())
    }

    /// The store constructor with the batch capability, when the library
    /// has it.
    pub fn new_store_parts(
        &self,
    ) -> Option<extern "C" fn(RStr<'_>, RStr<'_>, AbiPluginContext) -> AbiResult<AbiStoreParts>>
    {
        match self {
            Self::Current(m) => m.new_store_parts(),
            Self::Batch(m) => m.new_store_parts(),
            Self::V0_2_0(_) => None,
        }
    }

    /// The store constructor with the batch and watch capabilities, when
    /// the library has it.
    pub fn new_store_watched(
        &self,
    ) -> Option<extern "C" fn(RStr<'_>, RStr<'_>, AbiPluginContext) -> AbiResult<AbiWatchedParts>>
    {
        match self {
            Self::Current(m) => m.new_store_watched(),
            Self::Batch(_) | Self::V0_2_0(_) => None,
        }
    }
}
