//! The `logsaver` command line: `logsaver demo [DIR]` runs a simulated agent fleet against a
//! store and shows what it wrote.

mod demo;
mod ops;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use logsaver::Durability;

#[derive(Parser)]
#[command(name = "logsaver", version, about = "An embedded, log-structured checkpoint store for agent runtimes")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Simulate a fleet of agents writing checkpoints, then reopen the store and browse a thread.
    Demo(DemoArgs),
    /// Segments, live and dead bytes, garbage ratio, threads, checkpoints, writes, index memory.
    Stats {
        /// Store directory.
        dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Threads with their checkpoint count, bytes and last update.
    Threads {
        /// Store directory.
        dir: PathBuf,
        /// Sort by: thread, checkpoints, bytes, updated.
        #[arg(long, default_value = "thread")]
        sort: String,
        /// Threads per page.
        #[arg(long, default_value_t = 50)]
        limit: usize,
        /// Threads to skip.
        #[arg(long, default_value_t = 0)]
        offset: usize,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// The checkpoints of a thread, newest first, with step, source, parent and size.
    History {
        /// Store directory.
        dir: PathBuf,
        /// Thread id.
        thread: String,
        /// Only this namespace ("" is the root graph).
        #[arg(long)]
        ns: Option<String>,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// A checkpoint (the latest by default): metadata, channels, pending writes.
    Show {
        /// Store directory.
        dir: PathBuf,
        /// Thread id.
        thread: String,
        /// Checkpoint id (default: the latest).
        checkpoint: Option<String>,
        /// Namespace.
        #[arg(long, default_value = "")]
        ns: String,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Check every frame, record and blob reference; exit status 1 if anything is wrong.
    Verify {
        /// Store directory.
        dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Rewrite the live records and reclaim the garbage.
    Compact {
        /// Store directory.
        dir: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// A consistent copy of the store in DEST (new or empty), taken beside a running writer.
    Backup {
        /// Store directory.
        dir: PathBuf,
        /// Destination directory (created; must be empty if it exists).
        dest: PathBuf,
        /// JSON output.
        #[arg(long)]
        json: bool,
    },
    /// Every checkpoint and pending write as JSON Lines on stdout (values base64).
    Export {
        /// Store directory.
        dir: PathBuf,
    },
    /// Read `export` output from stdin into a store (created if missing); idempotent.
    Import {
        /// Store directory.
        dir: PathBuf,
    },
}

/// Options of `logsaver demo`.
#[derive(clap::Args, Clone, Debug)]
pub struct DemoArgs {
    /// Store directory (created; a previous demo store there is replaced).
    #[arg(default_value = "./logsaver-demo")]
    pub dir: PathBuf,
    /// Agent threads (conversations).
    #[arg(long, default_value_t = 300)]
    pub threads: usize,
    /// Steps per thread.
    #[arg(long, default_value_t = 30)]
    pub steps: usize,
    /// Worker OS threads driving the agents concurrently.
    #[arg(long, default_value_t = 8)]
    pub workers: usize,
    /// Concurrent `put_writes` calls (tasks) per step.
    #[arg(long, default_value_t = 3)]
    pub tasks: usize,
    /// Durability mode: sync, flush or none.
    #[arg(long, default_value_t = Durability::Sync, value_parser = parse_durability)]
    pub durability: Durability,
}

/// `--durability`: the library's own names (`Durability: FromStr`).
fn parse_durability(name: &str) -> Result<Durability, String> {
    name.parse().map_err(|e: logsaver::Error| e.to_string())
}

/// A command that writes needs the writer lock: say so, and what works beside a writer.
fn needs_writer(command: &str, error: logsaver::Error) -> logsaver::Error {
    match error {
        logsaver::Error::Locked { path } => logsaver::Error::InvalidArgument(format!(
            "`{command}` changes the store, so it needs the writer lock, and a writer holds {} (its process is \
             running). Close that writer first, or run the call from it (LogStore::compact, LogSaver.compact()). \
             stats, threads, history, show, export, verify and backup work beside a running writer.",
            path.display()
        )),
        other => other,
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args).map(|()| true),
        Command::Stats { dir, json } => ops::stats(&dir, json).map(|()| true),
        Command::Threads { dir, sort, limit, offset, json } => {
            ops::threads(&dir, &sort, limit, offset, json).map(|()| true)
        }
        Command::History { dir, thread, ns, json } => ops::history(&dir, &thread, ns.as_deref(), json).map(|()| true),
        Command::Show { dir, thread, checkpoint, ns, json } => {
            ops::show(&dir, &thread, checkpoint.as_deref(), &ns, json).map(|()| true)
        }
        Command::Verify { dir, json } => ops::verify(&dir, json),
        Command::Compact { dir, json } => {
            ops::compact(&dir, json).map(|()| true).map_err(|e| needs_writer("compact", e))
        }
        Command::Backup { dir, dest, json } => ops::backup(&dir, &dest, json).map(|()| true),
        Command::Export { dir } => ops::export(&dir).map(|()| true),
        Command::Import { dir } => ops::import(&dir).map_err(|e| needs_writer("import", e)).map(|n| {
            eprintln!("imported {n} records");
            true
        }),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::from(2)
        }
    }
}
