//! The directory contract on the embedded (table-backed) directory, plus what only it has to
//! prove: paging tokens bound to their list, large groups deleted completely, persistence.

mod contract;

use std::sync::Arc;

use directory::{Directory, DirectoryError, EmbeddedDirectory};
use storage::{EmbeddedTable, PageTokens, Table};

const SECRET: &[u8] = b"directory-test-paging-secret-0123";

use tempfile::TempDir;

fn open(dir: &TempDir) -> EmbeddedDirectory {
    let table: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.path().join("table.redb")).expect("open table"));
    EmbeddedDirectory::new(table, PageTokens::new(SECRET))
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                let dir = TempDir::new().unwrap();
                contract::$name(&open(&dir)).await;
            }
        )*
    };
}

contract_tests!(
    group_lifecycle,
    memberships,
    delete_ends_memberships,
    paging,
    bad_input
);

#[tokio::test]
async fn tokens_are_bound_to_their_list() {
    let dir = TempDir::new().unwrap();
    let d = open(&dir);
    let admin = contract::admin().await;
    for g in ["a", "b", "c"] {
        d.create_group(&admin, g, None).await.unwrap();
        for u in ["u1", "u2", "u3"] {
            d.add_user_to_group(&admin, g, u).await.unwrap();
        }
    }
    let groups_next = d.list_groups(1, None).await.unwrap().next.unwrap();
    let users_next = d
        .list_users_in_group("a", 1, None)
        .await
        .unwrap()
        .next
        .unwrap();
    // A token of one list does not continue another.
    assert!(matches!(
        d.list_users_in_group("a", 1, Some(&groups_next)).await,
        Err(DirectoryError::Invalid(_))
    ));
    assert!(matches!(
        d.list_users_in_group("b", 1, Some(&users_next)).await,
        Err(DirectoryError::Invalid(_))
    ));
    assert!(matches!(
        d.list_groups(1, Some(&users_next)).await,
        Err(DirectoryError::Invalid(_))
    ));
    // Tokens sealed with another secret are refused.
    let other = EmbeddedDirectory::new(
        Arc::new(EmbeddedTable::open(&dir.path().join("other.redb")).unwrap()),
        PageTokens::new(b"another-secret-also-long-enough!!"),
    );
    assert!(matches!(
        other.list_groups(1, Some(&groups_next)).await,
        Err(DirectoryError::Invalid(_))
    ));
    assert!(d.list_groups(1, Some(&groups_next)).await.is_ok());
}

#[tokio::test]
async fn deleting_a_large_group_removes_every_membership() {
    let dir = TempDir::new().unwrap();
    let d = open(&dir);
    let admin = contract::admin().await;
    d.create_group(&admin, "big", None).await.unwrap();
    d.create_group(&admin, "other", None).await.unwrap();
    let users: Vec<String> = (0..120).map(|i| format!("user{i:03}")).collect();
    for u in &users {
        d.add_user_to_group(&admin, "big", u).await.unwrap();
    }
    d.add_user_to_group(&admin, "other", "user000")
        .await
        .unwrap();
    assert_eq!(contract::all_users(&d, "big", 100).await.len(), 120);
    d.delete_group(&admin, "big").await.unwrap();
    for u in &users[1..] {
        assert!(d.groups_of_user(u).await.unwrap().is_empty(), "{u}");
    }
    assert_eq!(d.groups_of_user("user000").await.unwrap(), ["other"]);
    d.create_group(&admin, "big", None).await.unwrap();
    assert!(contract::all_users(&d, "big", 100).await.is_empty());
}

#[tokio::test]
async fn persists_across_reopen() {
    let dir = TempDir::new().unwrap();
    let admin = contract::admin().await;
    {
        let d = open(&dir);
        d.create_group(&admin, "kept", Some("stays")).await.unwrap();
        d.add_user_to_group(&admin, "kept", "ann").await.unwrap();
    }
    let d = open(&dir);
    assert_eq!(d.get_group("kept").await.unwrap().description, "stays");
    assert_eq!(d.groups_of_user("ann").await.unwrap(), ["kept"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_adds_lose_nothing() {
    let dir = TempDir::new().unwrap();
    let d = Arc::new(open(&dir));
    let admin = contract::admin().await;
    d.create_group(&admin, "team", None).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..20 {
        let d = d.clone();
        let admin = admin.clone();
        tasks.push(tokio::spawn(async move {
            // The same new user twice, and distinct users.
            d.add_user_to_group(&admin, "team", "shared").await.unwrap();
            d.add_user_to_group(&admin, "team", &format!("u{i}"))
                .await
                .unwrap();
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(contract::all_users(&*d, "team", 100).await.len(), 21);
}
