//! The `logsaver` command line: `logsaver demo [DIR]` runs a simulated agent fleet against a
//! store and shows what it wrote.

mod demo;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
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
    /// Durability mode.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Sync)]
    pub durability: DurabilityArg,
}

/// `--durability` values.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum DurabilityArg {
    /// fdatasync before returning (group commit).
    Sync,
    /// Handed to the OS before returning.
    Flush,
    /// Buffered until flush/close.
    None,
}

impl From<DurabilityArg> for Durability {
    fn from(arg: DurabilityArg) -> Self {
        match arg {
            DurabilityArg::Sync => Durability::Sync,
            DurabilityArg::Flush => Durability::Flush,
            DurabilityArg::None => Durability::None,
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Demo(args) => demo::run(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("error: {error}");
            ExitCode::FAILURE
        }
    }
}
