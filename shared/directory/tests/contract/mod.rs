//! The directory contract: what every [`Directory`] must do, written once and run against each
//! implementation (`tests/embedded.rs`: the table-backed directory; `tests/cognito.rs`: Cognito
//! on moto). Every function gets a fresh, empty directory and panics on a violation.

#![allow(dead_code)]

use std::collections::BTreeSet;

use directory::{Directory, DirectoryError};
use serde_json::json;
use tenant_context::{AdminScope, Claims, Credentials, TenantConfig, TenantContext};

macro_rules! assert_err {
    ($e:expr, $p:pat) => {{
        let r = $e;
        assert!(
            matches!(r, Err($p)),
            "{}: expected Err({}), got {:?}",
            stringify!($e),
            stringify!($p),
            r
        );
    }};
}

/// A real [`AdminScope`] (a user in the `Admins` group).
pub async fn admin() -> AdminScope {
    let ctx = TenantContext::new(TenantConfig::default());
    let claims = json!({"cognito:username": "admin", "cognito:groups": ["Admins"]});
    let creds = Credentials {
        authorizer_claims: Some(Claims::new(claims.as_object().unwrap().clone())),
        ..Default::default()
    };
    let principal = ctx.authenticate(creds).await.expect("authenticate");
    ctx.authorize_admin(&principal).await.expect("admin")
}

fn is_iso(s: &str) -> bool {
    s.len() == 24 && s.ends_with('Z') && s.as_bytes()[10] == b'T'
}

/// Every group name of the directory, following `next` with pages of `limit`.
pub async fn all_groups(d: &dyn Directory, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1000 {
        let page = d.list_groups(limit, next.as_deref()).await.expect("list");
        assert!(page.items.len() <= limit, "page larger than limit");
        names.extend(page.items.into_iter().map(|g| g.name));
        match page.next {
            Some(n) => next = Some(n),
            None => return names,
        }
    }
    panic!("paging does not end");
}

/// Every username of `group`, following `next` with pages of `limit`.
pub async fn all_users(d: &dyn Directory, group: &str, limit: usize) -> Vec<String> {
    let mut names = Vec::new();
    let mut next: Option<String> = None;
    for _ in 0..1000 {
        let page = d
            .list_users_in_group(group, limit, next.as_deref())
            .await
            .expect("list users");
        assert!(page.items.len() <= limit, "page larger than limit");
        names.extend(page.items.into_iter().map(|u| u.username));
        match page.next {
            Some(n) => next = Some(n),
            None => return names,
        }
    }
    panic!("paging does not end");
}

/// Create, read, list, conflict, delete.
pub async fn group_lifecycle(d: &dyn Directory) {
    let admin = admin().await;
    assert!(all_groups(d, 10).await.is_empty());
    let g = d
        .create_group(&admin, "marketing", Some("Marketing team"))
        .await
        .expect("create");
    assert_eq!(g.name, "marketing");
    assert_eq!(g.description, "Marketing team");
    assert!(is_iso(&g.inserted_date), "{}", g.inserted_date);
    assert!(is_iso(&g.last_modified_date));

    let got = d.get_group("marketing").await.expect("get");
    assert_eq!(got.name, "marketing");
    assert_eq!(got.description, "Marketing team");
    assert!(is_iso(&got.inserted_date));

    assert_err!(
        d.create_group(&admin, "marketing", None).await,
        DirectoryError::Conflict(_)
    );
    let g2 = d
        .create_group(&admin, "marketing_read", None)
        .await
        .expect("create without description");
    assert_eq!(g2.description, "");

    let names: BTreeSet<String> = all_groups(d, 10).await.into_iter().collect();
    assert_eq!(
        names,
        BTreeSet::from(["marketing".to_owned(), "marketing_read".to_owned()])
    );

    d.delete_group(&admin, "marketing").await.expect("delete");
    assert_err!(d.get_group("marketing").await, DirectoryError::NotFound(_));
    assert_err!(
        d.delete_group(&admin, "marketing").await,
        DirectoryError::NotFound(_)
    );
    assert_eq!(all_groups(d, 10).await, ["marketing_read"]);
    assert_err!(d.get_group("nope").await, DirectoryError::NotFound(_));
}

/// Adding users (created on first add), listing them, their groups, removing them.
pub async fn memberships(d: &dyn Directory) {
    let admin = admin().await;
    d.create_group(&admin, "finance", None).await.unwrap();
    d.create_group(&admin, "finance_read", None).await.unwrap();
    assert!(all_users(d, "finance", 10).await.is_empty());

    // A new user is created by the first add.
    d.add_user_to_group(&admin, "finance", "jane@example.com")
        .await
        .expect("add new user");
    // Adding again is fine.
    d.add_user_to_group(&admin, "finance", "jane@example.com")
        .await
        .expect("add again");
    d.add_user_to_group(&admin, "finance_read", "jane@example.com")
        .await
        .expect("second group");
    d.add_user_to_group(&admin, "finance_read", "bob")
        .await
        .unwrap();

    let page = d.list_users_in_group("finance", 10, None).await.unwrap();
    assert_eq!(page.items.len(), 1);
    let jane = &page.items[0];
    assert_eq!(jane.username, "jane@example.com");
    assert_eq!(jane.email.as_deref(), Some("jane@example.com"));
    assert!(jane.enabled);
    assert!(!jane.user_status.is_empty());
    assert!(is_iso(&jane.inserted_date) && is_iso(&jane.last_modified_date));
    let mut readers = all_users(d, "finance_read", 10).await;
    readers.sort();
    assert_eq!(readers, ["bob", "jane@example.com"]);
    let bob = d
        .list_users_in_group("finance_read", 10, None)
        .await
        .unwrap();
    let bob = bob.items.iter().find(|u| u.username == "bob").unwrap();
    assert_eq!(bob.email, None);

    assert_eq!(
        d.groups_of_user("jane@example.com").await.unwrap(),
        ["finance", "finance_read"]
    );
    assert_eq!(d.groups_of_user("bob").await.unwrap(), ["finance_read"]);
    assert_err!(
        d.groups_of_user("nobody").await,
        DirectoryError::NotFound(_)
    );

    d.remove_user_from_group(&admin, "finance", "jane@example.com")
        .await
        .expect("remove");
    assert!(all_users(d, "finance", 10).await.is_empty());
    assert_eq!(
        d.groups_of_user("jane@example.com").await.unwrap(),
        ["finance_read"]
    );
    // Removing a user who is no longer a member is fine; unknown users and groups are not.
    d.remove_user_from_group(&admin, "finance", "jane@example.com")
        .await
        .expect("remove again");
    assert_err!(
        d.remove_user_from_group(&admin, "finance", "nobody").await,
        DirectoryError::NotFound(_)
    );
    assert_err!(
        d.remove_user_from_group(&admin, "nogroup", "bob").await,
        DirectoryError::NotFound(_)
    );

    // Adding to a missing group fails and creates no user.
    assert_err!(
        d.add_user_to_group(&admin, "nogroup", "ghost").await,
        DirectoryError::NotFound(_)
    );
    assert_err!(d.groups_of_user("ghost").await, DirectoryError::NotFound(_));
    assert_err!(
        d.list_users_in_group("nogroup", 10, None).await,
        DirectoryError::NotFound(_)
    );
}

/// Deleting a group ends its memberships; a group re-created under the same name is empty.
pub async fn delete_ends_memberships(d: &dyn Directory) {
    let admin = admin().await;
    d.create_group(&admin, "ops", None).await.unwrap();
    d.create_group(&admin, "dev", None).await.unwrap();
    for u in ["u1", "u2", "u3"] {
        d.add_user_to_group(&admin, "ops", u).await.unwrap();
        d.add_user_to_group(&admin, "dev", u).await.unwrap();
    }
    d.delete_group(&admin, "ops").await.unwrap();
    for u in ["u1", "u2", "u3"] {
        assert_eq!(d.groups_of_user(u).await.unwrap(), ["dev"], "{u}");
    }
    d.create_group(&admin, "ops", None).await.unwrap();
    assert!(all_users(d, "ops", 10).await.is_empty());
    assert_eq!(all_users(d, "dev", 10).await.len(), 3);
}

/// Lists page with `limit` and `next`: every item exactly once.
pub async fn paging(d: &dyn Directory) {
    let admin = admin().await;
    let want: BTreeSet<String> = (0..7).map(|i| format!("site{i}")).collect();
    for g in &want {
        d.create_group(&admin, g, None).await.unwrap();
    }
    for limit in [1, 3, 7, 100] {
        let got = all_groups(d, limit).await;
        assert_eq!(got.len(), 7, "limit {limit}: {got:?}");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), want);
    }
    let first = d.list_groups(3, None).await.unwrap();
    assert_eq!(first.items.len(), 3);
    assert!(first.next.is_some());

    let users: BTreeSet<String> = (0..5).map(|i| format!("user{i}")).collect();
    for u in &users {
        d.add_user_to_group(&admin, "site0", u).await.unwrap();
    }
    for limit in [1, 2, 5] {
        let got = all_users(d, "site0", limit).await;
        assert_eq!(got.len(), 5, "limit {limit}: {got:?}");
        assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), users);
    }
}

/// Bad limits, tokens and names are refused as invalid, not as failures.
pub async fn bad_input(d: &dyn Directory) {
    let admin = admin().await;
    d.create_group(&admin, "g1", None).await.unwrap();
    for limit in [0, 101] {
        assert_err!(d.list_groups(limit, None).await, DirectoryError::Invalid(_));
        assert_err!(
            d.list_users_in_group("g1", limit, None).await,
            DirectoryError::Invalid(_)
        );
    }
    assert_err!(
        d.list_groups(10, Some("not-a-token")).await,
        DirectoryError::Invalid(_)
    );
    for bad in ["", "a b", "a/b", "x\u{1}"] {
        assert_err!(
            d.add_user_to_group(&admin, "g1", bad).await,
            DirectoryError::Invalid(_)
        );
    }
    assert_err!(
        d.add_user_to_group(&admin, "g1", &"u".repeat(129)).await,
        DirectoryError::Invalid(_)
    );
    for bad in ["", "a/b", &"g".repeat(129)] {
        assert_err!(
            d.create_group(&admin, bad, None).await,
            DirectoryError::Invalid(_)
        );
    }
    assert_err!(
        d.create_group(&admin, "g2", Some(&"d".repeat(2049))).await,
        DirectoryError::Invalid(_)
    );
    // An empty `next` is the same as none.
    assert_eq!(d.list_groups(10, Some("")).await.unwrap().items.len(), 1);
}
