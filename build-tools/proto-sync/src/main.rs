//! `proto-sync`: keeps `proto/` equal to what the pinned `livekit-protocol` crate renders.
//!
//! ```text
//! cargo run -p proto-sync            # rewrite proto/ from the pin
//! cargo run -p proto-sync -- --check # exit 1 if proto/ is stale (CI)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Render proto/ from the pinned livekit-protocol crate")]
struct Args {
    /// Compare instead of writing; exit 1 when proto/ differs from the pin.
    #[arg(long)]
    check: bool,
    /// Workspace root (defaults to the one this tool was built in).
    #[arg(long)]
    workspace: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let workspace = args.workspace.unwrap_or_else(proto_sync::workspace_root);
    let proto_dir = workspace.join("proto");
    let result = proto_sync::locate_pin(&workspace).and_then(|pin| {
        let rendered = proto_sync::render_pin(&pin)?;
        Ok((pin, rendered))
    });
    let (pin, rendered) = match result {
        Ok(ok) => ok,
        Err(err) => {
            eprintln!("proto-sync: {err}");
            return ExitCode::from(2);
        }
    };
    let version = format!(
        "{} {}{}",
        proto_sync::PIN_CRATE,
        pin.crate_version,
        pin.protocol_version
            .map(|v| format!(" (protocol {v})"))
            .unwrap_or_default()
    );
    if args.check {
        let stale = proto_sync::diff(&proto_dir, &rendered);
        if stale.is_empty() {
            println!("proto-sync: proto/ matches {version}");
            return ExitCode::SUCCESS;
        }
        eprintln!(
            "proto-sync: proto/ differs from {version} in: {}\nrun `cargo run -p proto-sync` and commit the result",
            stale.join(", ")
        );
        return ExitCode::FAILURE;
    }
    match proto_sync::write(&proto_dir, &rendered) {
        Ok(()) => {
            println!("proto-sync: wrote {} files from {version}", rendered.len());
            ExitCode::SUCCESS
        }
        Err(err) => {
            eprintln!("proto-sync: {err}");
            ExitCode::from(2)
        }
    }
}
