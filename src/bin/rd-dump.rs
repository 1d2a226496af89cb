//! `rd-dump`: print every registration stored in a gateway's sled directory, as an aligned
//! table or as JSON lines. An offline inspection tool: it opens the database through
//! `registry::store` (never creating one), so it cannot run while the gateway holds the lock.
//!
//! Exit codes: 0 printed, 1 the database could not be read (locked, corrupt, newer format),
//! 2 no database at the given path.

use std::io::{self, BufWriter, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use coap_gateway::link_format;
use coap_gateway::registry::{Registration, Store, StoreError};
use coap_gateway::time::{now_ms, rfc3339_ms};

/// A small cache is enough to read every record once.
const CACHE_MB: u64 = 16;

/// Print every registration stored in a coap-gateway data directory.
#[derive(Debug, Parser)]
#[command(version, about)]
struct Args {
    /// The gateway's sled directory (`gateway.data_dir` in config.yaml).
    #[arg(long, default_value = "./data")]
    data_dir: PathBuf,
    /// One JSON object per line (the stored registration) instead of a table.
    #[arg(long)]
    json: bool,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let store = match Store::open_existing(&args.data_dir, CACHE_MB) {
        Ok(store) => store,
        Err(StoreError::Locked { path }) => {
            eprintln!(
                "rd-dump: the registry database at {} is locked: a running gateway holds the lock (stop it, or use its admin HTTP API)",
                path.display()
            );
            return ExitCode::from(1);
        }
        Err(e @ StoreError::NotFound { .. }) => {
            eprintln!("rd-dump: {e} (check --data-dir)");
            return ExitCode::from(2);
        }
        Err(e) => {
            eprintln!("rd-dump: {e}");
            return ExitCode::from(1);
        }
    };
    let loaded = match store.load_all() {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("rd-dump: {}: {e}", args.data_dir.display());
            return ExitCode::from(1);
        }
    };
    if loaded.skipped > 0 {
        eprintln!(
            "rd-dump: {} undecodable records skipped (left untouched on disk)",
            loaded.skipped
        );
    }
    let mut out = BufWriter::new(io::stdout().lock());
    let written = if args.json {
        write_json(&mut out, &loaded.registrations)
    } else {
        write_table(&mut out, &loaded.registrations, now_ms())
    };
    match written.and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        // A closed pipe (`rd-dump | head`) is not worth a complaint.
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("rd-dump: cannot write output: {e}");
            ExitCode::from(1)
        }
    }
}

fn write_json(out: &mut impl Write, regs: &[Registration]) -> io::Result<()> {
    for reg in regs {
        serde_json::to_writer(&mut *out, reg)?;
        out.write_all(b"\n")?;
    }
    Ok(())
}

const HEADERS: [&str; 8] = [
    "LOCATION", "EP", "D", "BASE", "STATUS", "LT", "EXPIRES", "LINKS",
];

fn row(reg: &Registration, now_ms: u64) -> [String; 8] {
    let expires = if reg.is_expired_at(now_ms) {
        format!("{} (expired)", rfc3339_ms(reg.expires_at_ms))
    } else {
        rfc3339_ms(reg.expires_at_ms)
    };
    [
        reg.id.location(),
        reg.ep.to_string(),
        reg.d
            .as_ref()
            .map_or_else(|| "-".to_string(), |d| d.to_string()),
        reg.base.clone(),
        reg.status.as_u8().to_string(),
        reg.lifetime_s.to_string(),
        expires,
        link_format::serialize(&reg.links),
    ]
}

/// Columns padded to their widest cell; the last column (links) is left unpadded.
fn write_table(out: &mut impl Write, regs: &[Registration], now_ms: u64) -> io::Result<()> {
    let rows: Vec<[String; 8]> = regs.iter().map(|r| row(r, now_ms)).collect();
    let mut widths = HEADERS.map(|h| h.chars().count());
    for cells in &rows {
        for (width, cell) in widths.iter_mut().zip(cells) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let headers = HEADERS.map(str::to_string);
    for cells in std::iter::once(&headers).chain(&rows) {
        let last = cells.len() - 1;
        let mut line = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i == last {
                line.push_str(cell);
            } else {
                line.push_str(cell);
                let pad = widths[i] - cell.chars().count() + 2;
                line.extend(std::iter::repeat_n(' ', pad));
            }
        }
        writeln!(out, "{}", line.trim_end())?;
    }
    writeln!(out, "{} registrations", rows.len())
}
