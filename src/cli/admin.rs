//! Operating a store: `backup` (offline, or through a running server's Backup RPC) and `check`
//! (every part verified against the others; exit status 1 on damage).

use anyhow::{bail, Context, Result};

use asterism::engine::BackupReport;
use asterism::server::proto as pb;

use super::args::{BackupArgs, CheckArgs};
use super::{open_existing, output};

pub(super) fn backup(args: BackupArgs) -> Result<()> {
    let report = match (&args.db, &args.server) {
        (Some(db), _) => {
            let engine = open_existing(db).with_context(|| {
                "if a server holds this store, ask it: `asterism backup --server URL --out DIR`"
            })?;
            engine.backup(&args.out)?
        }
        (None, Some(url)) => backup_over_grpc(url, args.token.as_deref(), &args.out)?,
        (None, None) => bail!("give --db DIR, or --server URL for a running server"),
    };
    output::print_backup(&report, args.json)
}

/// Asks the server at `url` for a backup into `out` (made absolute here, as the server resolves
/// a relative path against its own working directory).
fn backup_over_grpc(url: &str, token: Option<&str>, out: &std::path::Path) -> Result<BackupReport> {
    let out = std::path::absolute(out)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        let mut client = pb::asterism_client::AsterismClient::connect(url.to_string())
            .await
            .with_context(|| format!("connecting to {url}"))?;
        let mut request = tonic::Request::new(pb::BackupRequest {
            out_dir: out.display().to_string(),
        });
        if let Some(t) = token {
            request
                .metadata_mut()
                .insert("authorization", format!("Bearer {t}").parse()?);
        }
        let r = client
            .backup(request)
            .await
            .map_err(|s| anyhow::anyhow!("{}: {}", url, s.message()))?
            .into_inner();
        Ok(BackupReport {
            out_dir: r.out_dir,
            objects: r.objects,
            bytes: r.bytes,
            index_dump: r.index_dump,
        })
    })
}

pub(super) fn check(args: CheckArgs) -> Result<()> {
    let engine = open_existing(&args.db.db)?;
    let report = engine.check()?;
    output::print_check(&report, args.json)?;
    if !report.is_sound() {
        bail!(
            "{} is damaged: {} problems",
            args.db.db.display(),
            report.problem_count
        );
    }
    Ok(())
}
