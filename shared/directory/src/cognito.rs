//! The Cognito user pool as the directory.
//!
//! Cold start matters: [`CognitoDirectory::new`] does no I/O; the SDK configuration
//! ([`aws_setup::sdk_config`]: region, credentials, endpoint, extra CAs) is built and the client
//! created on first use.
//!
//! Cognito's own `NextToken` is passed through as `next`. Cognito pages hold at most
//! [`COGNITO_MAX_PAGE`] items, so a larger `limit` returns 60 items and a `next` token.
//!
//! IAM actions used: `cognito-idp:ListGroups`, `CreateGroup`, `GetGroup`, `DeleteGroup`,
//! `ListUsersInGroup`, `AdminAddUserToGroup`, `AdminRemoveUserFromGroup`,
//! `AdminListGroupsForUser`, `AdminCreateUser`.

use async_trait::async_trait;
use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_sdk_cognitoidentityprovider::operation::admin_add_user_to_group::AdminAddUserToGroupError;
use aws_sdk_cognitoidentityprovider::primitives::DateTime;
use aws_sdk_cognitoidentityprovider::types::{
    AttributeType, GroupType, MessageActionType, UserType,
};
use aws_setup::{AwsConfig, LazyClient};
use tenant_context::AdminScope;

use crate::{
    Directory, DirectoryError, Group, Page, User, check_description, check_group_name, check_limit,
    check_username, iso8601, looks_like_email,
};

/// The request builder of operation `$op` on this directory's user pool (every Cognito call
/// names the pool first).
macro_rules! on_pool {
    ($dir:expr, $op:ident) => {
        $dir.client().await.$op().user_pool_id(&$dir.pool_id)
    };
}

/// A page of a Cognito list: its items as the directory's, and Cognito's own `NextToken`.
fn page<C, T>(items: &[C], convert: fn(&C) -> T, next: Option<&str>) -> Page<T> {
    Page {
        items: items.iter().map(convert).collect(),
        next: next.map(str::to_owned),
    }
}

/// Most items Cognito returns in one page of `ListGroups`, `ListUsersInGroup` and
/// `AdminListGroupsForUser`.
pub const COGNITO_MAX_PAGE: usize = 60;

/// The user directory in a Cognito user pool.
pub struct CognitoDirectory {
    pool_id: String,
    client: LazyClient<Client>,
}

/// What a failing call was about, for the error message.
#[derive(Clone, Copy, Default)]
struct About<'a> {
    group: Option<&'a str>,
    user: Option<&'a str>,
}

impl<'a> About<'a> {
    fn group(group: &'a str) -> Self {
        About {
            group: Some(group),
            user: None,
        }
    }

    fn member(group: &'a str, user: &'a str) -> Self {
        About {
            group: Some(group),
            user: Some(user),
        }
    }

    fn user(user: &'a str) -> Self {
        About {
            group: None,
            user: Some(user),
        }
    }
}

fn error_code<E: ProvideErrorMetadata, R>(e: &SdkError<E, R>) -> Option<&str> {
    e.as_service_error().and_then(|s| s.code())
}

/// Maps a Cognito error: unknown group or user -> NotFound, existing group -> Conflict,
/// refused parameters or paging tokens -> Invalid, anything else -> Unavailable.
fn map_err<E, R>(e: SdkError<E, R>, about: About<'_>) -> DirectoryError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug,
{
    let message = || {
        e.as_service_error()
            .and_then(|s| s.message())
            .unwrap_or("refused by Cognito")
            .to_owned()
    };
    match error_code(&e) {
        Some("ResourceNotFoundException") => match about.group {
            Some(g) => DirectoryError::NotFound(format!("group '{g}' not found")),
            // Only the user pool itself can be missing: a configuration error.
            None => DirectoryError::Unavailable(format!("user pool not found: {}", message())),
        },
        Some("UserNotFoundException") => DirectoryError::NotFound(format!(
            "user '{}' not found",
            about.user.unwrap_or_default()
        )),
        Some("GroupExistsException") => DirectoryError::Conflict(format!(
            "group '{}' already exists",
            about.group.unwrap_or_default()
        )),
        // `InvalidToken` is what moto answers for a bad paging token.
        Some("InvalidParameterException" | "InvalidToken" | "InvalidNextTokenException") => {
            DirectoryError::Invalid(message())
        }
        _ => {
            let detail = DisplayErrorContext(&e).to_string();
            tracing::warn!(error = %detail, "Cognito call failed");
            DirectoryError::Unavailable(detail)
        }
    }
}

fn date(d: Option<&DateTime>) -> String {
    d.map(|d| iso8601(d.secs(), d.subsec_nanos() / 1_000_000))
        .unwrap_or_default()
}

fn group_from(g: &GroupType) -> Group {
    Group {
        name: g.group_name().unwrap_or_default().to_owned(),
        description: g.description().unwrap_or_default().to_owned(),
        inserted_date: date(g.creation_date()),
        last_modified_date: date(g.last_modified_date()),
    }
}

fn user_from(u: &UserType) -> User {
    User {
        username: u.username().unwrap_or_default().to_owned(),
        email: u
            .attributes()
            .iter()
            .find(|a| a.name() == "email")
            .and_then(|a| a.value())
            .map(str::to_owned),
        enabled: u.enabled(),
        user_status: u
            .user_status()
            .map(|s| s.as_str().to_owned())
            .unwrap_or_default(),
        inserted_date: date(u.user_create_date()),
        last_modified_date: date(u.user_last_modified_date()),
    }
}

fn page_size(limit: usize) -> i32 {
    limit.min(COGNITO_MAX_PAGE) as i32
}

fn token(next: Option<&str>) -> Option<String> {
    next.filter(|t| !t.is_empty()).map(str::to_owned)
}

impl CognitoDirectory {
    /// The directory in user pool `pool_id`; the client is created on first use from the
    /// environment (region, credentials, `AWS_ENDPOINT_URL`).
    pub fn new(pool_id: impl Into<String>) -> Self {
        Self::with_aws(&AwsConfig::default(), pool_id)
    }

    /// The directory in user pool `pool_id`, reached with `aws` (endpoint, region, extra CAs);
    /// the client is created on first use.
    pub fn with_aws(aws: &AwsConfig, pool_id: impl Into<String>) -> Self {
        CognitoDirectory {
            pool_id: pool_id.into(),
            client: LazyClient::lazy(aws.clone(), |_, sdk| Client::new(sdk)),
        }
    }

    /// The directory in user pool `pool_id`, through a ready client (tests, moto).
    pub fn with_client(client: Client, pool_id: impl Into<String>) -> Self {
        CognitoDirectory {
            pool_id: pool_id.into(),
            client: LazyClient::ready(client),
        }
    }

    /// The directory in the user pool named by `USER_POOL_ID`, reached with the function's AWS
    /// settings `aws` (endpoint, region and `AWS_CA_BUNDLE`'s CAs, read once by
    /// [`AwsConfig::from_env`]).
    pub fn from_env(aws: &AwsConfig) -> Result<Self, String> {
        match std::env::var("USER_POOL_ID") {
            Ok(id) if !id.trim().is_empty() => Ok(Self::with_aws(aws, id.trim())),
            _ => Err(
                "environment variable USER_POOL_ID: missing or empty; set it to the Cognito user pool id (e.g. us-east-1_AbC123)"
                    .into(),
            ),
        }
    }

    pub fn pool_id(&self) -> &str {
        &self.pool_id
    }

    async fn client(&self) -> &Client {
        self.client.get().await
    }

    async fn create_user(&self, username: &str) -> Result<(), DirectoryError> {
        let mut req = on_pool!(self, admin_create_user)
            .username(username)
            .message_action(MessageActionType::Suppress);
        if looks_like_email(username) {
            let email = AttributeType::builder()
                .name("email")
                .value(username)
                .build()
                .map_err(|e| DirectoryError::Invalid(e.to_string()))?;
            req = req.user_attributes(email);
        }
        match req.send().await {
            Ok(_) => Ok(()),
            // Created concurrently: fine, it exists now.
            Err(e) if error_code(&e) == Some("UsernameExistsException") => Ok(()),
            Err(e) => Err(map_err(e, About::user(username))),
        }
    }

    async fn add_existing_user(
        &self,
        group: &str,
        username: &str,
    ) -> Result<(), SdkError<AdminAddUserToGroupError>> {
        on_pool!(self, admin_add_user_to_group)
            .group_name(group)
            .username(username)
            .send()
            .await
            .map(|_| ())
    }
}

#[async_trait]
impl Directory for CognitoDirectory {
    async fn list_groups(
        &self,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<Group>, DirectoryError> {
        check_limit(limit)?;
        let out = on_pool!(self, list_groups)
            .limit(page_size(limit))
            .set_next_token(token(next))
            .send()
            .await
            .map_err(|e| map_err(e, About::default()))?;
        Ok(page(out.groups(), group_from, out.next_token()))
    }

    async fn create_group(
        &self,
        _admin: &AdminScope,
        name: &str,
        description: Option<&str>,
    ) -> Result<Group, DirectoryError> {
        check_group_name(name)?;
        check_description(description)?;
        let out = on_pool!(self, create_group)
            .group_name(name)
            .set_description(description.map(str::to_owned))
            .send()
            .await
            .map_err(|e| map_err(e, About::group(name)))?;
        out.group()
            .map(group_from)
            .ok_or_else(|| DirectoryError::Unavailable("CreateGroup returned no group".into()))
    }

    async fn get_group(&self, name: &str) -> Result<Group, DirectoryError> {
        check_group_name(name)?;
        let out = on_pool!(self, get_group)
            .group_name(name)
            .send()
            .await
            .map_err(|e| map_err(e, About::group(name)))?;
        out.group()
            .map(group_from)
            .ok_or_else(|| DirectoryError::Unavailable("GetGroup returned no group".into()))
    }

    async fn delete_group(&self, _admin: &AdminScope, name: &str) -> Result<(), DirectoryError> {
        check_group_name(name)?;
        on_pool!(self, delete_group)
            .group_name(name)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, About::group(name)))
    }

    async fn list_users_in_group(
        &self,
        group: &str,
        limit: usize,
        next: Option<&str>,
    ) -> Result<Page<User>, DirectoryError> {
        check_group_name(group)?;
        check_limit(limit)?;
        let out = on_pool!(self, list_users_in_group)
            .group_name(group)
            .limit(page_size(limit))
            .set_next_token(token(next))
            .send()
            .await
            .map_err(|e| map_err(e, About::group(group)))?;
        Ok(page(out.users(), user_from, out.next_token()))
    }

    /// `AdminAddUserToGroup`; if the user does not exist, the group is checked (`GetGroup`, so
    /// no user is created for a missing group), the user created with `AdminCreateUser`
    /// (`MessageAction=SUPPRESS`: no invitation) and added.
    async fn add_user_to_group(
        &self,
        _admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError> {
        check_group_name(group)?;
        check_username(username)?;
        let about = About::member(group, username);
        match self.add_existing_user(group, username).await {
            Ok(()) => Ok(()),
            Err(e) if error_code(&e) == Some("UserNotFoundException") => {
                self.get_group(group).await?;
                self.create_user(username).await?;
                self.add_existing_user(group, username)
                    .await
                    .map_err(|e| map_err(e, about))
            }
            Err(e) => Err(map_err(e, about)),
        }
    }

    async fn remove_user_from_group(
        &self,
        _admin: &AdminScope,
        group: &str,
        username: &str,
    ) -> Result<(), DirectoryError> {
        check_group_name(group)?;
        check_username(username)?;
        on_pool!(self, admin_remove_user_from_group)
            .group_name(group)
            .username(username)
            .send()
            .await
            .map(|_| ())
            .map_err(|e| map_err(e, About::member(group, username)))
    }

    async fn groups_of_user(&self, username: &str) -> Result<Vec<String>, DirectoryError> {
        check_username(username)?;
        let mut names = Vec::new();
        let mut next: Option<String> = None;
        loop {
            let out = on_pool!(self, admin_list_groups_for_user)
                .username(username)
                .limit(COGNITO_MAX_PAGE as i32)
                .set_next_token(next.take())
                .send()
                .await
                .map_err(|e| map_err(e, About::user(username)))?;
            names.extend(
                out.groups()
                    .iter()
                    .filter_map(|g| g.group_name())
                    .map(str::to_owned),
            );
            match out.next_token() {
                Some(t) if !t.is_empty() => next = Some(t.to_owned()),
                _ => break,
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }
}
