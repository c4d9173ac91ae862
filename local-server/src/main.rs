//! `local-server`: runs every route on loopback, or prints a token for it.

use std::path::PathBuf;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use local_server::{Functions, Gateway, LocalKeys, TokenSpec};

#[derive(Parser)]
#[command(about = "Local server of the multi-tenant document and FHIR platform")]
struct Cli {
    /// Folder for the embedded database, blobs and the local signing key.
    #[arg(long, global = true, env = "LOCAL_DATA_DIR", default_value = ".local")]
    data_dir: PathBuf,
    /// Port on 127.0.0.1 (0: any free port, recorded in <data-dir>/server.json).
    #[arg(long, global = true, env = "LOCAL_PORT", default_value_t = 8080)]
    port: u16,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Serve every route on 127.0.0.1 (the default command).
    Serve,
    /// Print a token signed by the local key, as Cognito would issue it.
    Token {
        /// Username (cognito:username).
        #[arg(long)]
        user: String,
        /// Comma-separated groups (cognito:groups), e.g. marketing,finance_read or Admins.
        /// Without it, the user's groups in the local directory (managed with the groups API).
        #[arg(long, value_delimiter = ',', num_args = 0..)]
        groups: Option<Vec<String>>,
        /// Tenant id (custom:tenantId).
        #[arg(long)]
        tenant: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 3600)]
        ttl: u64,
        /// Print an access token (client_id) instead of an ID token (aud).
        #[arg(long)]
        access: bool,
    },
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let cli = Cli::parse();
    let keys = LocalKeys::load_or_create(&cli.data_dir)?;
    let port = cli.port;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Token {
            user,
            groups,
            tenant,
            ttl,
            access,
        } => {
            let groups = match groups {
                Some(g) => g,
                None => {
                    local_server::directory_groups_of(&cli.data_dir, port, &user, keys.kid())
                        .await?
                }
            };
            let token = keys.token(&TokenSpec {
                user,
                groups: groups.into_iter().filter(|g| !g.is_empty()).collect(),
                tenant,
                ttl_seconds: ttl,
                access,
            })?;
            println!("{token}");
            Ok(())
        }
        Command::Serve => {
            platform_http::init_telemetry();
            let listener = tokio::net::TcpListener::bind(("127.0.0.1", port))
                .await
                .map_err(|e| format!("cannot listen on 127.0.0.1:{port}: {e}"))?;
            // Port 0 takes a free port; the one taken is printed and recorded.
            let port = listener.local_addr().map_err(|e| e.to_string())?.port();
            let functions = Functions::local(&cli.data_dir, &format!("http://127.0.0.1:{port}"))?;
            let gateway = Arc::new(Gateway::new(&keys, functions));
            eprintln!(
                "local server on http://127.0.0.1:{port} (data in {}); get a token with: scripts/dev.sh token --user alice --groups marketing",
                cli.data_dir.display()
            );
            local_server::record_server(&cli.data_dir, port)?;
            let shutdown = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let served = local_server::serve(listener, gateway, shutdown)
                .await
                .map_err(|e| e.to_string());
            local_server::forget_server(&cli.data_dir);
            served
        }
    }
}
