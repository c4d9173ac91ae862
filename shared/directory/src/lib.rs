//! The user directory: groups and the users in them (`docs/architecture.md`, "Tenant model").
//!
//! In AWS the directory is the Cognito user pool ([`CognitoDirectory`], feature `cognito`); the
//! local server and fast tests use [`EmbeddedDirectory`] (feature `embedded`), which keeps
//! groups, users and memberships in the storage table under `global#directory#...`. Both
//! implement [`Directory`] and pass the same contract tests (`tests/contract/mod.rs`).
//!
//! In automatic site mode a group *is* a site grant (`X`, `X_read`, `X_govern`), so every write
//! is an administrator's action: the write methods take the caller's [`AdminScope`], which only
//! the tenant-context library can issue after checking the caller is an administrator.
//!
//! Lists are paged: `limit` items at most ([`MAX_PAGE`]), and an opaque `next` token that the
//! caller passes back unchanged to continue.

// Without an implementation (no feature), the shared checks have no caller.
#![cfg_attr(not(any(feature = "cognito", feature = "embedded")), allow(dead_code))]

#[cfg(feature = "cognito")]
mod cognito;
#[cfg(feature = "embedded")]
mod embedded;

use async_trait::async_trait;
use serde::Serialize;
use tenant_context::AdminScope;

#[cfg(feature = "cognito")]
pub use cognito::{COGNITO_MAX_PAGE, CognitoDirectory};
#[cfg(feature = "embedded")]
pub use embedded::EmbeddedDirectory;

/// Largest `limit` of one page.
pub const MAX_PAGE: usize = 100;
/// Longest group name (Cognito's limit).
pub const MAX_GROUP_NAME: usize = 128;
/// Longest username (Cognito's limit).
pub const MAX_USERNAME: usize = 128;
/// Longest group description (Cognito's limit).
pub const MAX_DESCRIPTION: usize = 2048;

/// A group of the directory (FormKiQ's `Group`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Group {
    pub name: String,
    pub description: String,
    /// ISO 8601 UTC with milliseconds, e.g. `2026-11-22T10:00:00.000Z`.
    pub inserted_date: String,
    pub last_modified_date: String,
}

/// A user of the directory (FormKiQ's `User`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct User {
    pub username: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    pub enabled: bool,
    /// Cognito's user status (`CONFIRMED`, `FORCE_CHANGE_PASSWORD`, ...).
    pub user_status: String,
    pub inserted_date: String,
    pub last_modified_date: String,
}

/// One page of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page<T> {
    pub items: Vec<T>,
    /// Pass back as `next` to continue; `None` when there is nothing more (an implementation may
    /// also return a token that leads to an empty last page, as Cognito sometimes does).
    pub next: Option<String>,
}

/// Why a directory call failed. The text is meant for the caller.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DirectoryError {
    /// The group or user does not exist (404).
    #[error("{0}")]
    NotFound(String),
    /// The group already exists (409).
    #[error("{0}")]
    Conflict(String),
    /// A request the directory refuses: bad name, limit or `next` token (400).
    #[error("{0}")]
    Invalid(String),
    /// The directory failed or could not be reached (503).
    #[error("directory unavailable: {0}")]
    Unavailable(String),
}

/// The user directory.
#[async_trait]
pub trait Directory: Send + Sync {
    /// Groups in name order (embedded) or Cognito's order, `limit` (1..=[`MAX_PAGE`]) at most.
    async fn list_groups(
        &self,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<Group>, DirectoryError>;

    /// Creates a group; [`DirectoryError::Conflict`] if it exists.
    async fn create_group(
        &self,
        admin: &AdminScope,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, DirectoryError>;

    /// The group; [`DirectoryError::NotFound`] if it does not exist.
    async fn get_group(&self, name: &str) -> Result<Group, DirectoryError>;

    /// Deletes a group and its memberships (its users stay); [`DirectoryError::NotFound`] if it
    /// does not exist.
    async fn delete_group(&self, admin: &AdminScope, name: &str) -> Result<(), DirectoryError>;

    /// The users of a group; [`DirectoryError::NotFound`] if the group does not exist.
    async fn list_users_in_group(
        &self,
        group: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<User>, DirectoryError>;

    /// Adds a user to a group (idempotent). The group must exist ([`DirectoryError::NotFound`]).
    ///
    /// A user that does not exist yet is created first: Cognito's `AdminAddUserToGroup` needs an
    /// existing user, so [`CognitoDirectory`] calls `AdminCreateUser` with `MessageAction`
    /// `SUPPRESS` (no invitation is sent; the user has no password until an administrator sets
    /// one or resets it, status `FORCE_CHANGE_PASSWORD`) and then adds it. A username that looks
    /// like an e-mail address is also stored as the user's `email` attribute (unverified).
    async fn add_user_to_group(
        &self,
        admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError>;

    /// Removes a user from a group (idempotent for an existing user who is not a member);
    /// [`DirectoryError::NotFound`] if the group or the user does not exist.
    async fn remove_user_from_group(
        &self,
        admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError>;

    /// Every group of a user, sorted by name (what a token of the user carries as
    /// `cognito:groups`); [`DirectoryError::NotFound`] if the user does not exist.
    async fn groups_of_user(&self, username: &str) -> Result<Vec<String>, DirectoryError>;
}

/// Checks a page `limit`.
pub(crate) fn check_limit(limit: usize) -> Result<(), DirectoryError> {
    if (1..=MAX_PAGE).contains(&limit) {
        Ok(())
    } else {
        Err(DirectoryError::Invalid(format!(
            "limit must be from 1 to {MAX_PAGE}, not {limit}"
        )))
    }
}

/// Why `name` cannot name a group in any directory (empty, too long, control characters or
/// `/`), or `None`. The groups function applies the stricter site-id rules on creation.
pub fn group_name_problem(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("a group name must not be empty".into());
    }
    if name.chars().count() > MAX_GROUP_NAME {
        return Some(format!(
            "a group name has at most {MAX_GROUP_NAME} characters"
        ));
    }
    if let Some(c) = name.chars().find(|c| c.is_control() || *c == '/') {
        return Some(format!("a group name must not contain {c:?}"));
    }
    None
}

/// Why `username` cannot name a user (empty, longer than 128 characters, whitespace, control
/// characters or `/`; Cognito allows letters, marks, symbols, digits and punctuation only), or
/// `None`.
pub fn username_problem(username: &str) -> Option<String> {
    if username.is_empty() {
        return Some("a username must not be empty".into());
    }
    if username.chars().count() > MAX_USERNAME {
        return Some(format!("a username has at most {MAX_USERNAME} characters"));
    }
    if let Some(c) = username
        .chars()
        .find(|c| c.is_control() || c.is_whitespace() || *c == '/')
    {
        return Some(format!("a username must not contain {c:?}"));
    }
    None
}

pub(crate) fn check_group_name(name: &str) -> Result<(), DirectoryError> {
    group_name_problem(name).map_or(Ok(()), |p| Err(DirectoryError::Invalid(p)))
}

pub(crate) fn check_username(name: &str) -> Result<(), DirectoryError> {
    username_problem(name).map_or(Ok(()), |p| Err(DirectoryError::Invalid(p)))
}

pub(crate) fn check_description(d: Option<&str>) -> Result<(), DirectoryError> {
    match d {
        Some(d) if d.chars().count() > MAX_DESCRIPTION => Err(DirectoryError::Invalid(format!(
            "a group description has at most {MAX_DESCRIPTION} characters"
        ))),
        _ => Ok(()),
    }
}

/// Whether `username` looks like an e-mail address (then it is also the user's `email`).
pub(crate) fn looks_like_email(username: &str) -> bool {
    match username.split_once('@') {
        Some((local, domain)) => !local.is_empty() && domain.contains('.') && !domain.contains('@'),
        None => false,
    }
}

/// Cognito's dates (seconds and milliseconds) as stored timestamps.
#[cfg(any(feature = "cognito", test))]
pub(crate) use timestamp::from_unix as iso8601;
#[cfg(any(feature = "embedded", test))]
pub(crate) use timestamp::now;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(group_name_problem("marketing_read").is_none());
        assert!(group_name_problem("").is_some());
        assert!(group_name_problem(&"a".repeat(129)).is_some());
        assert!(group_name_problem(&"a".repeat(128)).is_none());
        assert!(group_name_problem("a/b").is_some());
        assert!(group_name_problem("a\u{7}").is_some());
        assert!(username_problem("jane.doe+x@example.com").is_none());
        assert!(username_problem("caf\u{e9}").is_none());
        for bad in ["", "a b", "a/b", "a\tb", "a\u{0}"] {
            assert!(username_problem(bad).is_some(), "{bad:?}");
        }
        assert!(username_problem(&"é".repeat(128)).is_none());
        assert!(username_problem(&"é".repeat(129)).is_some());
        assert!(check_description(Some(&"d".repeat(2049))).is_err());
        assert!(check_limit(0).is_err() && check_limit(101).is_err() && check_limit(100).is_ok());
    }

    #[test]
    fn emails_and_dates() {
        assert!(looks_like_email("a@b.c"));
        assert!(!looks_like_email("alice"));
        assert!(!looks_like_email("@b.c"));
        assert!(!looks_like_email("a@b"));
        assert_eq!(iso8601(0, 5), "1970-01-01T00:00:00.005Z");
        assert_eq!(iso8601(1_795_000_000, 123), "2026-11-18T11:06:40.123Z");
        assert_eq!(now().len(), 24);
    }
}
