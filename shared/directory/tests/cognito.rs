//! The directory contract on Cognito, as moto's `moto_server` speaks it on loopback (moto from
//! PyPI in `<workspace>/.venv`, or `$MOTO_SERVER`). Every test gets a fresh user pool.

mod contract;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use aws_sdk_cognitoidentityprovider::Client;
use aws_sdk_cognitoidentityprovider::config::{Credentials, SharedCredentialsProvider};
use directory::{CognitoDirectory, Directory, DirectoryError};
use tokio::sync::OnceCell;

static CHILD: OnceLock<Mutex<Option<Child>>> = OnceLock::new();
static ENDPOINT: OnceCell<String> = OnceCell::const_new();

extern "C" fn kill_moto() {
    if let Some(m) = CHILD.get()
        && let Ok(mut c) = m.lock()
        && let Some(c) = c.as_mut()
    {
        let _ = c.kill();
        let _ = c.wait();
    }
}

unsafe extern "C" {
    fn atexit(f: extern "C" fn()) -> i32;
}

async fn start_moto() -> String {
    let exe = std::env::var("MOTO_SERVER")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/moto_server")
        });
    assert!(
        exe.exists(),
        "{} is missing: run scripts/ensure-venv.sh",
        exe.display()
    );
    let port = TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let child = Command::new(exe)
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start moto_server");
    CHILD.get_or_init(|| {
        // SAFETY: registers a plain function with no captured state.
        unsafe { atexit(kill_moto) };
        Mutex::new(None)
    });
    *CHILD.get().unwrap().lock().unwrap() = Some(child);
    let endpoint = format!("http://127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(60);
    let http = reqwest::Client::new();
    while http
        .get(format!("{endpoint}/moto-api/"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "moto_server did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    endpoint
}

/// A Cognito client for moto, built in the calling test's runtime.
async fn client() -> Client {
    let endpoint = ENDPOINT.get_or_init(start_moto).await;
    let sdk = aws_setup::sdk_config(Some(endpoint), Some("us-east-1"), None)
        .into_builder()
        .credentials_provider(SharedCredentialsProvider::new(Credentials::new(
            "test", "test", None, None, "moto",
        )))
        .build();
    Client::new(&sdk)
}

/// A directory on a fresh user pool.
async fn fresh() -> CognitoDirectory {
    let client = client().await;
    let pool = client
        .create_user_pool()
        .pool_name(format!("p-{}", uuid::Uuid::new_v4().simple()))
        .send()
        .await
        .expect("create user pool");
    let id = pool.user_pool().and_then(|p| p.id()).unwrap().to_owned();
    CognitoDirectory::with_client(client, id)
}

macro_rules! contract_tests {
    ($($name:ident),* $(,)?) => {
        $(
            #[tokio::test]
            async fn $name() {
                contract::$name(&fresh().await).await;
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
async fn new_users_are_created_without_invitation() {
    let d = fresh().await;
    let admin = contract::admin().await;
    d.create_group(&admin, "team", None).await.unwrap();
    d.add_user_to_group(&admin, "team", "new.user@example.com")
        .await
        .unwrap();
    let user = client()
        .await
        .admin_get_user()
        .user_pool_id(d.pool_id())
        .username("new.user@example.com")
        .send()
        .await
        .expect("the user was created");
    assert_eq!(
        user.user_status().map(|s| s.as_str()),
        Some("FORCE_CHANGE_PASSWORD")
    );
    let email = user
        .user_attributes()
        .iter()
        .find(|a| a.name() == "email")
        .and_then(|a| a.value());
    assert_eq!(email, Some("new.user@example.com"));
}

#[tokio::test]
async fn a_missing_pool_is_unavailable_not_not_found() {
    let d = CognitoDirectory::with_client(client().await, "us-east-1_doesnotexist");
    assert!(matches!(
        d.list_groups(10, None).await,
        Err(DirectoryError::Unavailable(_))
    ));
}

#[tokio::test]
async fn from_env_needs_a_pool_id() {
    // Only reads the variable; never set in this test process.
    if std::env::var_os("USER_POOL_ID").is_none() {
        let e = CognitoDirectory::from_env(&aws_setup::AwsConfig::default())
            .err()
            .expect("missing pool id");
        assert!(e.contains("USER_POOL_ID"), "{e}");
    }
}
