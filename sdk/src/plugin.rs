//! The constructor traits a plugin type implements next to its kind's
//! trait, and the kinds themselves.

use abi_stable::StableAbi;

use crate::{ApprovalPolicy, PluginContext, PluginError, SecretStore, Transport};

/// The three kinds of plugin.
#[repr(u8)]
#[derive(StableAbi, Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PluginKind {
    /// A [`SecretStore`].
    Store = 0,
    /// An [`ApprovalPolicy`].
    Approval = 1,
    /// A [`Transport`].
    Transport = 2,
}

impl PluginKind {
    /// The config slot name: `store`, `approval` or `transport`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Store => "store",
            Self::Approval => "approval",
            Self::Transport => "transport",
        }
    }
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A store plugin: a [`SecretStore`] with a name and a constructor.
pub trait StorePlugin: SecretStore + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the store from its config table, given as TOML text (an empty
    /// string when the operator wrote none; [`config::parse`](crate::config::parse)
    /// reads it). A bad config is an [`ErrorKind::Invalid`](crate::ErrorKind::Invalid)
    /// error whose message names the field.
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}

/// An approval plugin: an [`ApprovalPolicy`] with a name and a constructor.
pub trait ApprovalPlugin: ApprovalPolicy + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the policy from its config table (TOML text).
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}

/// A transport plugin: a [`Transport`] with a name and a constructor.
pub trait TransportPlugin: Transport + Sized {
    /// The name operators write in `use =` or `name =`.
    const NAME: &'static str;
    /// One line shown by `keygate plugins list`.
    const DESCRIPTION: &'static str;
    /// Builds the transport from its config table (TOML text).
    fn from_config(config: &str, ctx: PluginContext) -> Result<Self, PluginError>;
}
