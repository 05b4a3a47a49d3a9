//! The crate's one error type.

use pollux_core::PortError;

/// Why a bond could not be configured or changed.
#[derive(Debug, thiserror::Error)]
pub enum BondError {
    /// A device argument the bond does not know (a typo must not silently
    /// change behaviour).
    #[error("unknown bond option {key:?}; known options: {known}")]
    UnknownKey { key: String, known: &'static str },
    /// A value that does not parse or is out of range.
    #[error("invalid value {value:?} for {key}: {why}")]
    InvalidValue {
        key: String,
        value: String,
        why: String,
    },
    /// A single-valued option given more than once.
    #[error("option {0} given more than once")]
    Duplicate(String),
    /// A bond needs members.
    #[error("a bond needs at least one member")]
    NoMembers,
    /// More members than [`MAX_MEMBERS`](crate::config::MAX_MEMBERS).
    #[error("a bond has at most 32 members, {0} were given")]
    TooManyMembers(usize),
    /// Two members with one name.
    #[error("member {0:?} given more than once")]
    DuplicateMember(String),
    /// The configuration names a member the caller did not supply, or the
    /// caller supplied one the configuration does not name.
    #[error("member {0:?} is named in the configuration but no port was supplied for it")]
    MissingMember(String),
    #[error("port {0:?} was supplied but the configuration does not name it as a member")]
    UnexpectedMember(String),
    /// `primary` names no member.
    #[error("primary {0:?} is not a member of the bond")]
    UnknownPrimary(String),
    /// A member refused a control operation the bond needs.
    #[error("member {member}: {what}")]
    Member {
        member: String,
        what: String,
        #[source]
        source: PortError,
    },
    /// 802.3ad needs every member to receive 01:80:c2:00:00:02.
    #[error(
        "member {member} cannot receive the slow-protocols address 01:80:c2:00:00:02 \
         (multicast filter, all-multicast and promiscuous mode all refused: {why}); \
         802.3ad cannot run on it"
    )]
    NoSlowProtocolsRx { member: String, why: String },
    /// The bond was used before `configure`.
    #[error("the bond is not configured")]
    NotConfigured,
}

impl BondError {
    pub(crate) fn invalid(key: &str, value: &str, why: impl Into<String>) -> BondError {
        BondError::InvalidValue {
            key: key.to_string(),
            value: value.to_string(),
            why: why.into(),
        }
    }

    pub(crate) fn member(member: &str, what: impl Into<String>, source: PortError) -> BondError {
        BondError::Member {
            member: member.to_string(),
            what: what.into(),
            source,
        }
    }
}

impl From<BondError> for PortError {
    fn from(e: BondError) -> PortError {
        match e {
            BondError::Member {
                member,
                what,
                source,
            } => PortError::Other(format!("bond member {member}: {what}: {source}")),
            BondError::NotConfigured => PortError::NotConfigured,
            other => PortError::InvalidConfig(other.to_string()),
        }
    }
}
