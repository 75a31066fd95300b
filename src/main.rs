use std::process::ExitCode;

use clap::Parser;

#[tokio::main]
async fn main() -> ExitCode {
    // One crypto backend (aws-lc) is compiled in; installing it explicitly keeps rustls and
    // reqwest from guessing if feature unification ever adds a second one.
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
    // A binary whose signature checks do not work refuses to start (see src/selftest.rs).
    if let Err(e) = tokenreview_gateway::selftest::run() {
        eprintln!("tokenreview-gateway: {e}");
        return ExitCode::from(70);
    }
    tokenreview_gateway::cli::run(tokenreview_gateway::cli::Cli::parse()).await
}
