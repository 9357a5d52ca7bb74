//! `proto-sync`: keeps `proto/` equal to what the pinned PyPI `livekit-protocol` renders.
//!
//! The pin is the `livekit-protocol==X` line of `tests/python/requirements.txt`; the
//! package must be installed at exactly that version for `python3` (or `$PYTHON`).
//!
//! ```text
//! cargo run -p proto-sync            # rewrite proto/ from the pin
//! cargo run -p proto-sync -- --check # exit 1 if proto/ is stale (CI)
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

#[derive(Debug, Parser)]
#[command(about = "Render proto/ from the pinned PyPI livekit-protocol package")]
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
    let pin = match proto_sync::locate_pin(&workspace) {
        Ok(pin) => pin,
        Err(err) => {
            eprintln!("proto-sync: {err}");
            return ExitCode::from(2);
        }
    };
    let rendered = proto_sync::render_pin(&pin);
    let version = format!("PyPI {} {}", proto_sync::PIN_PACKAGE, pin.version);
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
