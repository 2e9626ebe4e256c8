//! Newtypes and pure rules of the catalogue (no I/O).

pub mod inputs;
pub mod slug;
pub mod text;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// The fixed id of the default "Unassigned" category (seeded by migration 0001).
pub const DEFAULT_CATEGORY_ID: Uuid = Uuid::from_u128(0x0000_0000_0000_4000_8000_0000_0000_0001);

/// How a service is delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryMode {
    /// At the patient's place.
    MobileService,
    /// At a clinic, same day.
    OutpatientService,
    /// With a hospital stay.
    InpatientService,
}

impl DeliveryMode {
    /// The database value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::MobileService => "mobile_service",
            Self::OutpatientService => "outpatient_service",
            Self::InpatientService => "inpatient_service",
        }
    }
}

/// Where a service stands in the publishing workflow.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PublishingStatus {
    /// Not visible publicly (new services start here).
    Draft,
    /// Visible publicly.
    Published,
    /// Withdrawn.
    Archived,
}

impl PublishingStatus {
    /// The database value.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Draft => "draft",
            Self::Published => "published",
            Self::Archived => "archived",
        }
    }

    /// Parses the database value.
    pub fn from_db(value: &str) -> Option<Self> {
        match value {
            "draft" => Some(Self::Draft),
            "published" => Some(Self::Published),
            "archived" => Some(Self::Archived),
            _ => None,
        }
    }

    /// Rule 3: publish from draft or archived, archive from draft or published; a
    /// transition to the current status is a conflict.
    pub fn transition(self, to: Self) -> Result<Self, TransitionError> {
        match (self, to) {
            (from, to) if from == to => Err(TransitionError::AlreadyInState(to)),
            (_, Self::Draft) => Err(TransitionError::NotAllowed { from: self, to }),
            _ => Ok(to),
        }
    }
}

/// A refused status transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransitionError {
    /// The service already has that status (409).
    AlreadyInState(PublishingStatus),
    /// No such transition (409).
    NotAllowed {
        /// Current status.
        from: PublishingStatus,
        /// Requested status.
        to: PublishingStatus,
    },
}

#[cfg(test)]
mod tests {
    use super::{PublishingStatus::*, *};

    #[test]
    fn the_default_category_id_is_the_seeded_one() {
        assert_eq!(
            DEFAULT_CATEGORY_ID.to_string(),
            "00000000-0000-4000-8000-000000000001"
        );
    }

    #[test]
    fn status_transitions_follow_rule_3() {
        assert_eq!(Draft.transition(Published), Ok(Published));
        assert_eq!(Archived.transition(Published), Ok(Published));
        assert_eq!(Draft.transition(Archived), Ok(Archived));
        assert_eq!(Published.transition(Archived), Ok(Archived));
        for s in [Draft, Published, Archived] {
            assert_eq!(s.transition(s), Err(TransitionError::AlreadyInState(s)));
        }
        assert!(Published.transition(Draft).is_err());
    }
}
