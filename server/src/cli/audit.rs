//! `trellis audit`: the audit log straight from the database, for auditors: list and show
//! events, export them, and verify the hash chain.

use crate::store::Store;
use std::path::PathBuf;
use trellis_api::{AuditFilter, format_time, parse_time};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    #[command(subcommand)]
    pub command: AuditCommand,
    /// postgres://... ; without it, the SQLite file under --data-dir.
    #[arg(long, global = true, env = "DATABASE_URL")]
    pub database_url: Option<String>,
    /// Where `trellis serve` keeps its embedded database.
    #[arg(long, global = true, env = "TRELLIS_DATA_DIR", default_value = ".trellis")]
    pub data_dir: PathBuf,
}

#[derive(clap::Subcommand, Debug)]
pub enum AuditCommand {
    /// Events, newest first.
    List {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value_t = 50)]
        limit: i64,
    },
    /// One event with everything it carries, as JSON.
    Show { id: i64 },
    /// Every event a filter matches, newest first, as JSON Lines or CSV on stdout.
    Export {
        #[command(flatten)]
        filter: FilterArgs,
        #[arg(long, default_value = "jsonl", value_parser = ["jsonl", "csv"])]
        format: String,
    },
    /// Walks the hash chain; exit 1 at the first broken link.
    Verify,
}

#[derive(clap::Args, Debug)]
pub struct FilterArgs {
    /// A kind (revision.rejected) or a family of kinds (rollout).
    #[arg(long)]
    kind: Option<String>,
    #[arg(long)]
    service: Option<String>,
    #[arg(long)]
    actor: Option<String>,
    /// A commit SHA or its prefix.
    #[arg(long)]
    revision: Option<String>,
    /// From this time (UTC date, date and time, or unix ms).
    #[arg(long, value_parser = time)]
    since: Option<i64>,
    /// Before this time.
    #[arg(long, value_parser = time)]
    until: Option<i64>,
    /// Words in the summary.
    #[arg(long)]
    q: Option<String>,
    /// Leave out routine events (analyses, proxies joining and leaving, revisions synced).
    #[arg(long)]
    significant: bool,
}

fn time(s: &str) -> Result<i64, String> {
    parse_time(s).ok_or_else(|| format!("{s:?}: use 2026-11-26, 2026-11-26T13:30:00Z or unix milliseconds"))
}

impl FilterArgs {
    fn filter(&self) -> AuditFilter {
        AuditFilter {
            kind: self.kind.clone(),
            service: self.service.clone(),
            actor: self.actor.clone(),
            revision: self.revision.clone(),
            since: self.since,
            until: self.until,
            q: self.q.clone(),
            significant: self.significant,
        }
    }
}

/// Exit codes: 0 done (chain intact), 1 chain broken or event not found, 2 could not run.
pub async fn run(args: AuditArgs) -> anyhow::Result<i32> {
    let url = match args.database_url {
        Some(url) => url,
        None => {
            let file = args.data_dir.join("trellis.db");
            anyhow::ensure!(file.exists(), "no database at {}: pass --database-url or --data-dir", file.display());
            Store::sqlite_url(&file)
        }
    };
    let store = Store::connect(&url).await?;
    let code = match args.command {
        AuditCommand::List { filter, limit } => {
            for e in store.events(&filter.filter(), None, limit.clamp(1, 10_000)).await? {
                let service = e.service.as_deref().unwrap_or("-");
                println!(
                    "{:>7}  {}  {:<26} {:<14} {:<12} {}",
                    e.id,
                    format_time(e.at),
                    e.kind,
                    e.actor,
                    service,
                    e.summary
                );
            }
            0
        }
        AuditCommand::Show { id } => {
            match store.events(&AuditFilter::default(), id.checked_add(1), 1).await?.into_iter().find(|e| e.id == id) {
                Some(e) => {
                    println!("{}", serde_json::to_string_pretty(&e)?);
                    0
                }
                None => {
                    eprintln!("error: no audit event {id}");
                    1
                }
            }
        }
        AuditCommand::Export { filter, format } => {
            use std::io::Write;
            let (filter, csv) = (filter.filter(), format == "csv");
            let mut out = std::io::stdout().lock();
            if csv {
                out.write_all(crate::audit::export::CSV_HEADER.as_bytes())?;
            }
            let mut before = None;
            loop {
                let page = store.events(&filter, before, 1_000).await?;
                let Some(last) = page.last() else { break };
                before = Some(last.id);
                out.write_all(crate::audit::export::lines(&page, csv).as_bytes())?;
            }
            0
        }
        AuditCommand::Verify => {
            let v = crate::audit::export::verify(&store).await?;
            let legacy = match v.verifier.legacy {
                0 => String::new(),
                n => format!(" ({n} older events before the chain began)"),
            };
            match v.broken {
                None => {
                    println!("audit chain intact: {} events linked{legacy}", v.verifier.chained);
                    0
                }
                Some(broken) => {
                    println!("{broken}");
                    println!("{} events before it are linked and intact{legacy}", v.verifier.chained);
                    1
                }
            }
        }
    };
    store.close().await;
    Ok(code)
}
