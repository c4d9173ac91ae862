//! The defined-site store on the embedded backend: sites, grants and their reverse entries,
//! deletion with every grant, the data check, and the store as the tenant library's
//! [`DefinedSites`].

use std::sync::Arc;

use serde_json::json;
use site_store::{
    DataPartition, NewSite, SiteStatus, SiteStore, SiteUpdate, site_holds_data as holds,
};
use storage::{
    Condition, EmbeddedTable, Item, Key, Query, ScopedTable, SkRange, StorageError, Table,
};
use tenant_context::{
    AdminScope, Claims, Credentials, Permission, PermissionSet, RequestTarget, SiteId, SiteMode,
    TenantConfig, TenantContext, TenantScope,
};

struct Fixture {
    table: Arc<dyn Table>,
    store: SiteStore,
    _dir: tempfile::TempDir,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let table: Arc<dyn Table> =
        Arc::new(EmbeddedTable::open(&dir.path().join("table.redb")).unwrap());
    Fixture {
        store: SiteStore::new(table.clone()),
        table,
        _dir: dir,
    }
}

/// The document API's data partition, as that domain registers it.
const DOCUMENTS: DataPartition = DataPartition {
    pk: "docs",
    what: "documents",
};

/// What the site holds, of the documents partition.
async fn site_holds_data(
    table: &dyn Table,
    scope: &TenantScope,
) -> Result<Vec<&'static str>, StorageError> {
    holds(table, scope, &[DOCUMENTS]).await
}

fn site(s: &str) -> SiteId {
    SiteId::parse(s).unwrap()
}

fn perms(p: &[Permission]) -> PermissionSet {
    PermissionSet::of(p)
}

fn new_site(id: &str, title: Option<&str>) -> NewSite {
    NewSite {
        site_id: site(id),
        title: title.map(str::to_owned),
        status: SiteStatus::Active,
        inserted_date: "2026-11-22T10:00:00.000Z".into(),
    }
}

/// The tenant library in automatic mode: scopes for the tests come from it, as in a function.
fn ctx() -> TenantContext {
    TenantContext::new(TenantConfig::default())
}

async fn principal(ctx: &TenantContext, name: &str, groups: &[&str]) -> tenant_context::Principal {
    let claims = json!({"cognito:username": name, "cognito:groups": groups});
    ctx.authenticate(Credentials {
        authorizer_claims: Some(Claims::new(claims.as_object().unwrap().clone())),
        ..Default::default()
    })
    .await
    .unwrap()
}

async fn admin() -> AdminScope {
    let c = ctx();
    let p = principal(&c, "root", &["Admins"]).await;
    c.authorize_admin(&p).await.unwrap()
}

async fn scope(groups: &[&str], target: &str, required: Permission) -> TenantScope {
    let c = ctx();
    let p = principal(&c, "user", groups).await;
    c.authorize(&p, RequestTarget::site(Some(target)), required)
        .await
        .unwrap()
}

#[tokio::test]
async fn sites_are_created_read_listed_and_updated() {
    let f = fixture();
    let admin = admin().await;
    let rec = f
        .store
        .create_site(&admin, new_site("acme", Some("Acme Corp")))
        .await
        .unwrap();
    assert_eq!(rec.user_id, "root");
    assert_eq!(
        f.store
            .create_site(&admin, new_site("acme", None))
            .await
            .unwrap_err(),
        StorageError::ConditionFailed
    );
    let got = f.store.get_site(&site("acme")).await.unwrap().unwrap();
    assert_eq!(got, rec);
    assert_eq!(got.title.as_deref(), Some("Acme Corp"));
    assert_eq!(got.status, SiteStatus::Active);
    assert_eq!(f.store.get_site(&site("nope")).await.unwrap(), None);

    // The item is where the layout says, under `global#`.
    let raw = f
        .table
        .get(&Key::new("global#sites", "acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.str("siteId"), Some("acme"));
    assert_eq!(raw.str("status"), Some("ACTIVE"));
    assert_eq!(raw.str("insertedDate"), Some("2026-11-22T10:00:00.000Z"));
    assert_eq!(raw.str("userId"), Some("root"));

    for id in ["zeta", "beta", "jane.doe+x@example.com"] {
        f.store
            .create_site(&admin, new_site(id, None))
            .await
            .unwrap();
    }
    let all: Vec<String> = f
        .store
        .all_sites()
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.site_id.to_string())
        .collect();
    assert_eq!(all, ["acme", "beta", "jane.doe+x@example.com", "zeta"]);

    // Paged listing.
    let (first, next) = f.store.list_sites(3, None).await.unwrap();
    assert_eq!(first.len(), 3);
    let (rest, end) = f.store.list_sites(3, next).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].site_id.as_str(), "zeta");
    assert!(end.is_none());

    // Batch reads keep the caller's order and leave out undefined sites.
    let got: Vec<String> = f
        .store
        .get_sites(&[site("zeta"), site("missing"), site("acme"), site("zeta")])
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.site_id.to_string())
        .collect();
    assert_eq!(got, ["zeta", "acme"]);

    // Updates need GOVERN on the site itself.
    let governor = scope(&["acme_govern"], "acme", Permission::Govern).await;
    let updated = f
        .store
        .update_site(
            &governor,
            &SiteUpdate {
                title: None,
                status: Some(SiteStatus::Inactive),
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.status, SiteStatus::Inactive);
    assert_eq!(updated.title.as_deref(), Some("Acme Corp"), "title kept");
    let updated = f
        .store
        .update_site(
            &governor,
            &SiteUpdate {
                title: Some("".into()),
                status: None,
            },
        )
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.title, None, "an empty title removes it");
    assert_eq!(updated.status, SiteStatus::Inactive, "status kept");
    assert_eq!(
        f.store.get_site(&site("acme")).await.unwrap().unwrap(),
        updated
    );

    let reader = scope(&["acme_read"], "acme", Permission::Read).await;
    assert!(matches!(
        f.store
            .update_site(&reader, &SiteUpdate::default())
            .await
            .unwrap_err(),
        StorageError::OutOfScope(_)
    ));
    let other = scope(&["other_govern"], "other", Permission::Govern).await;
    assert_eq!(
        f.store
            .update_site(&other, &SiteUpdate::default())
            .await
            .unwrap(),
        None,
        "an undefined site is not updated"
    );
    assert_eq!(f.store.get_site(&site("other")).await.unwrap(), None);
}

#[tokio::test]
async fn concurrent_updates_keep_both_fields() {
    let f = fixture();
    let admin = admin().await;
    f.store
        .create_site(&admin, new_site("acme", None))
        .await
        .unwrap();
    let governor = scope(&["acme_govern"], "acme", Permission::Govern).await;
    let mut tasks = Vec::new();
    for i in 0..4 {
        let store = f.store.clone();
        let g = governor.clone();
        tasks.push(tokio::spawn(async move {
            let u = if i % 2 == 0 {
                SiteUpdate {
                    title: Some(format!("t{i}")),
                    status: None,
                }
            } else {
                SiteUpdate {
                    title: None,
                    status: Some(SiteStatus::Inactive),
                }
            };
            store.update_site(&g, &u).await
        }));
    }
    for t in tasks {
        assert!(t.await.unwrap().unwrap().is_some());
    }
    let r = f.store.get_site(&site("acme")).await.unwrap().unwrap();
    assert_eq!(r.status, SiteStatus::Inactive);
    assert!(r.title.unwrap().starts_with('t'));
}

#[tokio::test]
async fn grants_and_reverse_entries_move_together() {
    let f = fixture();
    let admin = admin().await;
    let acme = site("acme");
    let beta = site("beta");

    // No grant on an undefined site, and nothing written.
    assert!(
        !f.store
            .set_group_permissions(&admin, &acme, "team", perms(&[Permission::Read]))
            .await
            .unwrap()
    );
    assert!(f.store.sites_of_group("team").await.unwrap().is_empty());
    assert!(f.store.site_groups(&acme).await.unwrap().is_empty());

    for s in ["acme", "beta"] {
        f.store
            .create_site(&admin, new_site(s, None))
            .await
            .unwrap();
    }
    assert!(
        f.store
            .set_group_permissions(&admin, &acme, "team", perms(&[Permission::Write]))
            .await
            .unwrap()
    );
    assert!(
        f.store
            .set_group_permissions(&admin, &beta, "team", perms(&[Permission::Read]))
            .await
            .unwrap()
    );
    assert!(
        f.store
            .set_group_permissions(&admin, &acme, "a b#c", perms(&[Permission::Govern]))
            .await
            .unwrap()
    );

    // Stored closed under implication, in both directions.
    let raw = f
        .table
        .get(&Key::new("global#site#acme", "group#team"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(raw.get("permissions"), Some(&json!(["READ", "WRITE"])));
    assert_eq!(raw.str("groupName"), Some("team"));
    let rev = f
        .table
        .get(&Key::new("global#group#team", "site#acme"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rev.get("permissions"), Some(&json!(["READ", "WRITE"])));
    assert_eq!(rev.str("siteId"), Some("acme"));

    assert_eq!(
        f.store.sites_of_group("team").await.unwrap(),
        [
            (acme.clone(), perms(&[Permission::Write])),
            (beta.clone(), perms(&[Permission::Read]))
        ]
    );
    assert_eq!(
        f.store.site_groups(&acme).await.unwrap(),
        [
            ("a b#c".to_owned(), perms(&[Permission::Govern])),
            ("team".to_owned(), perms(&[Permission::Write]))
        ]
    );
    assert_eq!(
        f.store.group_permissions_on(&acme, "team").await.unwrap(),
        Some(perms(&[Permission::Write]))
    );
    assert_eq!(
        f.store.group_permissions_on(&acme, "nobody").await.unwrap(),
        None
    );
    // A group whose name is a prefix of another's sees only its own grants.
    assert!(f.store.sites_of_group("tea").await.unwrap().is_empty());
    assert!(f.store.sites_of_group("a b").await.unwrap().is_empty());
    // Names no grant can carry hold nothing, without an error.
    for bad in ["", "a\u{0}b", &"g".repeat(600)] {
        assert!(f.store.sites_of_group(bad).await.unwrap().is_empty());
        assert_eq!(
            f.store.group_permissions_on(&acme, bad).await.unwrap(),
            None
        );
        assert!(matches!(
            f.store
                .set_group_permissions(&admin, &acme, bad, perms(&[Permission::Read]))
                .await,
            Err(StorageError::InvalidRequest(_))
        ));
    }

    // Replacing permissions replaces both entries.
    f.store
        .set_group_permissions(&admin, &acme, "team", perms(&[Permission::Admin]))
        .await
        .unwrap();
    assert_eq!(
        f.store.sites_of_group("team").await.unwrap()[0],
        (acme.clone(), perms(&[Permission::Admin]))
    );

    // An empty set removes the grant; deleting twice says it is gone.
    assert!(
        f.store
            .set_group_permissions(&admin, &acme, "team", PermissionSet::EMPTY)
            .await
            .unwrap()
    );
    assert_eq!(
        f.store.group_permissions_on(&acme, "team").await.unwrap(),
        None
    );
    assert!(
        f.table
            .get(&Key::new("global#group#team", "site#acme"))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        f.store
            .delete_group_permissions(&admin, &beta, "team")
            .await
            .unwrap()
    );
    assert!(
        !f.store
            .delete_group_permissions(&admin, &beta, "team")
            .await
            .unwrap()
    );
    assert!(f.store.sites_of_group("team").await.unwrap().is_empty());
}

#[tokio::test]
async fn deleting_a_site_deletes_every_grant() {
    let f = fixture();
    let admin = admin().await;
    let acme = site("acme");
    let keep = site("keep");
    for s in ["acme", "keep"] {
        f.store
            .create_site(&admin, new_site(s, None))
            .await
            .unwrap();
    }
    // More grants than one transaction holds.
    let groups: Vec<String> = (0..120).map(|i| format!("g{i:03}")).collect();
    for g in &groups {
        f.store
            .set_group_permissions(&admin, &acme, g, perms(&[Permission::Read]))
            .await
            .unwrap();
    }
    f.store
        .set_group_permissions(&admin, &keep, "g000", perms(&[Permission::Write]))
        .await
        .unwrap();
    assert_eq!(f.store.site_groups(&acme).await.unwrap().len(), 120);

    assert!(f.store.delete_site(&admin, &acme).await.unwrap());
    assert_eq!(f.store.get_site(&acme).await.unwrap(), None);
    assert!(f.store.site_groups(&acme).await.unwrap().is_empty());
    for g in &groups[1..] {
        assert!(f.store.sites_of_group(g).await.unwrap().is_empty(), "{g}");
    }
    // Other sites' grants stay.
    assert_eq!(
        f.store.sites_of_group("g000").await.unwrap(),
        [(keep.clone(), perms(&[Permission::Write]))]
    );
    assert!(f.store.get_site(&keep).await.unwrap().is_some());
    assert!(!f.store.delete_site(&admin, &acme).await.unwrap());
    // A site can be defined again after deletion, without old grants.
    f.store
        .create_site(&admin, new_site("acme", None))
        .await
        .unwrap();
    assert!(f.store.site_groups(&acme).await.unwrap().is_empty());
}

#[tokio::test]
async fn data_check_looks_into_the_sites_own_partitions() {
    let f = fixture();
    let acme = scope(&["acme"], "acme", Permission::Read).await;
    let acme2 = scope(&["acme2"], "acme2", Permission::Write).await;
    assert!(site_holds_data(&*f.table, &acme).await.unwrap().is_empty());

    // Data of a site whose id extends this one's does not count.
    let t2 = ScopedTable::new(&*f.table, &acme2);
    t2.put(
        Item::new(t2.key("docs", "2026#x"), Default::default()),
        Condition::None,
    )
    .await
    .unwrap();
    assert!(site_holds_data(&*f.table, &acme).await.unwrap().is_empty());
    assert_eq!(
        site_holds_data(&*f.table, &acme2).await.unwrap(),
        ["documents"]
    );
    // Neither do items of other partitions of the site (e.g. a document's own partition).
    let w = scope(&["acme"], "acme", Permission::Write).await;
    let t = ScopedTable::new(&*f.table, &w);
    t.put(
        Item::new(t.key("doc#1", "doc"), Default::default()),
        Condition::None,
    )
    .await
    .unwrap();
    assert!(site_holds_data(&*f.table, &acme).await.unwrap().is_empty());
    t.put(
        Item::new(t.key("docs", "2026#1"), Default::default()),
        Condition::None,
    )
    .await
    .unwrap();
    assert_eq!(
        site_holds_data(&*f.table, &acme).await.unwrap(),
        ["documents"]
    );
    // No scan: the check is one query with limit 1 per partition (here verified on the keys).
    let page = f
        .table
        .query(&Query::new("acme#docs", SkRange::All, 1))
        .await
        .unwrap();
    assert_eq!(page.items.len(), 1);
}

#[tokio::test]
async fn the_store_backs_defined_mode_authorization() {
    let f = fixture();
    let admin = admin().await;
    f.store
        .create_site(&admin, new_site("acme", None))
        .await
        .unwrap();
    f.store
        .set_group_permissions(&admin, &site("acme"), "team", perms(&[Permission::Read]))
        .await
        .unwrap();
    let config = TenantConfig {
        site_mode: SiteMode::Defined,
        permission_cache: std::time::Duration::ZERO,
        ..TenantConfig::default()
    };
    let ctx = TenantContext::new(config).with_defined_sites(f.store.clone());
    let p = principal(&ctx, "ann", &["team", "unrelated"]).await;
    let s = ctx
        .authorize(&p, RequestTarget::default(), Permission::Read)
        .await
        .unwrap();
    assert_eq!(s.site().as_str(), "acme");
    assert!(!s.allows(Permission::Write));
    let e = ctx
        .authorize(&p, RequestTarget::site(Some("acme")), Permission::Write)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 403);

    // Tenant claims count only for defined sites.
    let claims = |t: &str| {
        json!({"cognito:username": "t", "custom:tenantId": t})
            .as_object()
            .unwrap()
            .clone()
    };
    for (tenant, ok) in [("acme", true), ("ghost", false)] {
        let p = ctx
            .authenticate(Credentials {
                authorizer_claims: Some(Claims::new(claims(tenant))),
                ..Default::default()
            })
            .await
            .unwrap();
        let r = ctx
            .authorize(&p, RequestTarget::default(), Permission::Write)
            .await;
        assert_eq!(r.is_ok(), ok, "{tenant}: {r:?}");
    }

    // Revocation bites at once with no cache.
    f.store
        .delete_group_permissions(&admin, &site("acme"), "team")
        .await
        .unwrap();
    let e = ctx
        .authorize(&p, RequestTarget::site(Some("acme")), Permission::Read)
        .await
        .unwrap_err();
    assert_eq!(e.status(), 401, "{e}");
}

#[tokio::test]
async fn an_unreadable_site_item_is_an_error_not_a_panic_or_a_gap() {
    let f = fixture();
    let admin = admin().await;
    f.store
        .create_site(&admin, new_site("acme", None))
        .await
        .unwrap();
    // A site item without a valid siteId (written by something else).
    f.table
        .put(
            Item::new(
                Key::new("global#sites", "broken"),
                json!({"siteId": "no spaces allowed"})
                    .as_object()
                    .unwrap()
                    .clone(),
            ),
            Condition::None,
        )
        .await
        .unwrap();
    assert!(matches!(
        f.store.all_sites().await,
        Err(StorageError::Unreadable(_))
    ));
    assert!(matches!(
        f.store.get_site(&site("broken")).await,
        Err(StorageError::Unreadable(_))
    ));
    assert!(f.store.get_site(&site("acme")).await.unwrap().is_some());
}
