//! `login` (also `get-token`, kubelogin's verb): the client side. A client-go exec credential
//! plugin that logs a person (or a job) in at the same OpenID Connect providers the gateway
//! trusts, verifies the ID token with the gateway's own code, caches it, and prints the
//! `ExecCredential` kubectl asks for.
//!
//! Flow of one invocation: read `KUBERNETES_EXEC_INFO`; take the cache key's lock; a cached
//! credential still valid for [`flow::EXPIRY_SKEW`] is printed at once; else the refresh token is
//! used; else (or when refreshing fails) a login with the chosen grant. Only a verified result
//! is written to the cache, atomically, before the lock is released, so the invocations that
//! waited for the lock find it.

pub mod authcode;
pub mod cache;
pub mod device;
pub mod error;
pub mod exec;
pub mod flow;
pub mod kubelogin;
pub mod oauth;
pub mod options;
pub mod setup;
pub mod verify;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};

pub use error::LoginError;
pub use flow::{Credential, obtain};
pub use options::{GrantType, LoginArgs, Options};

/// `login` and its subcommands.
#[derive(Debug, Args)]
#[command(args_conflicts_with_subcommands = true)]
pub struct LoginCommand {
    /// `setup` or `clean`; without one, get a token (the exec plugin).
    #[command(subcommand)]
    pub action: Option<LoginAction>,
    /// The get-token flags.
    #[command(flatten)]
    pub args: LoginArgs,
}

/// `login setup`, `login clean`.
#[derive(Debug, Subcommand)]
pub enum LoginAction {
    /// Log in once and print the token's claims, what the gateway would answer for it, and the
    /// kubeconfig user that runs this plugin.
    Setup(Box<setup::SetupArgs>),
    /// Remove the token cache.
    Clean {
        /// The cache directory (default ~/.kube/cache/tokenreview-gateway-login).
        #[arg(long)]
        token_cache_dir: Option<PathBuf>,
    },
}

/// Runs `login`, `login setup` or `login clean`.
pub async fn run(cmd: &LoginCommand) -> ExitCode {
    let result = match &cmd.action {
        None => get_token(&cmd.args).await,
        Some(LoginAction::Setup(args)) => setup::run(args).await,
        Some(LoginAction::Clean { token_cache_dir }) => {
            let dir = token_cache_dir.clone().unwrap_or_else(cache::default_dir);
            cache::TokenCache::clean(&dir).map(|n| eprintln!("removed {n} file(s) from {}", dir.display()))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn get_token(args: &LoginArgs) -> Result<(), LoginError> {
    let info = exec::ExecInfo::from_env()?;
    let opts = Options::from_args(args)?;
    let credential = obtain(&opts, info.interactive).await?;
    println!("{}", exec::credential(info.api, &credential.token, credential.expiry));
    Ok(())
}
