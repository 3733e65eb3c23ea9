//! `tollgate approve` and `tollgate approvals`: record and list approvals
//! and checklist attestations on a running server. The approver is the
//! holder of the token in `TOLLGATE_TOKEN`, never a flag.

use super::Exit;

/// The server and the release a command is about.
#[derive(Debug, clap::Args)]
struct Release {
    /// The tollgate server (`https://tollgate.example.com`).
    #[arg(long)]
    server: reqwest::Url,
    /// The release's service.
    #[arg(long)]
    service: String,
    /// The release's version.
    #[arg(long = "version", id = "release_version")]
    version: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApproveArgs {
    #[command(flatten)]
    release: Release,
    /// The stage approved (default: every stage).
    #[arg(long)]
    stage: Option<String>,
    /// Attest a checklist item (e.g. `rollback-plan-tested`) instead of approving.
    #[arg(long)]
    item: Option<String>,
    /// Why, for the record.
    #[arg(long, default_value = "")]
    comment: String,
}

#[derive(Debug, clap::Args)]
pub(crate) struct ApprovalsArgs {
    #[command(flatten)]
    release: Release,
    /// `table` or `json`.
    #[arg(long, default_value = "table", value_parser = ["table", "json"])]
    format: String,
}

pub(crate) fn approve(args: ApproveArgs) -> anyhow::Result<Exit> {
    let mut body = serde_json::json!({
        "service": args.release.service,
        "version": args.release.version,
        "comment": args.comment,
    });
    if let Some(s) = &args.stage {
        body["stage"] = s.clone().into();
    }
    if let Some(i) = &args.item {
        body["item"] = i.clone().into();
    }
    let a = super::client::call(&args.release.server, "v1/approvals", Some(&body))?;
    let groups = a["groups"]
        .as_array()
        .map(|g| {
            g.iter()
                .filter_map(|g| g.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .unwrap_or_default();
    println!(
        "recorded {} `{}` of {} {}{} by {}{} ({})",
        if a["name"] == crate::policy::approvals::APPROVAL {
            "approval"
        } else {
            "attestation"
        },
        a["name"].as_str().unwrap_or_default(),
        a["service"].as_str().unwrap_or_default(),
        a["version"].as_str().unwrap_or_default(),
        a["stage"]
            .as_str()
            .map(|s| format!(" for stage `{s}`"))
            .unwrap_or_default(),
        a["approver"].as_str().unwrap_or_default(),
        if groups.is_empty() {
            String::new()
        } else {
            format!(" [{groups}]")
        },
        a["id"].as_str().unwrap_or_default(),
    );
    Ok(Exit::Success)
}

pub(crate) fn list(args: ApprovalsArgs) -> anyhow::Result<Exit> {
    let Release {
        server,
        service,
        version,
    } = &args.release;
    let query: String = form_urlencoded::Serializer::new(String::new())
        .append_pair("service", service)
        .append_pair("version", version)
        .finish();
    let answer = super::client::call(server, &format!("v1/approvals?{query}"), None)?;
    if args.format == "json" {
        println!("{}", serde_json::to_string_pretty(&answer)?);
        return Ok(Exit::Success);
    }
    let approvals: Vec<crate::policy::approvals::Approval> =
        serde_json::from_value(answer["approvals"].clone())?;
    if approvals.is_empty() {
        println!("no approvals for {service} {version}");
        return Ok(Exit::Success);
    }
    let rows: Vec<[String; 5]> = approvals
        .iter()
        .map(|a| {
            let when = time::OffsetDateTime::from_unix_timestamp(a.at_ms.div_euclid(1000))
                .ok()
                .and_then(|t| {
                    t.format(&time::format_description::well_known::Rfc3339)
                        .ok()
                })
                .unwrap_or_default();
            let by = if a.groups.is_empty() {
                a.approver.clone()
            } else {
                format!("{} ({})", a.approver, a.groups.join(", "))
            };
            [
                when,
                a.name.clone(),
                a.stage.clone().unwrap_or_else(|| "*".into()),
                by,
                a.comment.clone(),
            ]
            .map(|cell| crate::base::text::escape_control(&cell).into_owned())
        })
        .collect();
    print!(
        "{}",
        columns(&["WHEN", "NAME", "STAGE", "BY (GROUPS)", "COMMENT"], &rows)
    );
    Ok(Exit::Success)
}

/// Rows under headers, each column as wide as its widest cell and the last
/// one left ragged.
fn columns<const N: usize>(headers: &[&str; N], rows: &[[String; N]]) -> String {
    let mut widths = headers.map(|h| h.chars().count());
    for row in rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [&str; N]| {
        let mut s = String::new();
        for (i, cell) in cells.iter().enumerate() {
            if i + 1 == N {
                s.push_str(cell);
            } else {
                s.push_str(cell);
                s.push_str(&" ".repeat(widths[i] - cell.chars().count() + 2));
            }
        }
        s.trim_end().to_string() + "\n"
    };
    let mut out = line(*headers);
    for row in rows {
        out.push_str(&line(row.each_ref().map(String::as_str)));
    }
    out
}
