//! `cfg push|pull|list|remove`: config documents stored in Redis under
//! `svc:version` labels (`hydra:service:<svc>:configs`), which a service
//! started with `HYDRA_SERVICE=svc:version` loads.
//!
//! Unlike Node's hydra-cli, `push` refuses a file that is not a JSON object
//! (Node stored `null` for invalid JSON), and `pull`/`remove` of a label
//! that is not stored fail with exit 1.

use std::cmp::Ordering;
use std::path::Path;

use serde_json::{Value, json};

use crate::context::Context;
use crate::error::{CliError, CliResult};
use crate::output::{Report, Table};

/// Splits `svc:version`, refusing anything else before Redis is touched.
fn parse_label(label: &str) -> CliResult<(&str, &str)> {
    match label.split(':').collect::<Vec<_>>()[..] {
        [svc, version] if !svc.trim().is_empty() && !version.trim().is_empty() => Ok((svc, version)),
        _ => Err(CliError::usage(
            format!("`{label}` is not a config label"),
            "write it as service:version, e.g. billing:1.2.0",
        )),
    }
}

fn not_stored(label: &str, svc: &str) -> CliError {
    CliError::failed(
        format!("no config is stored as {label}"),
        format!("`hydra-cli cfg list {svc}` lists the stored versions"),
    )
}

fn store_error(what: &str, error: hydra::Error) -> CliError {
    match error {
        // A stored document that is not JSON is the store's fault, not the command line's.
        hydra::Error::Malformed(reason) => CliError::failed(
            format!("{what}: the stored document is not JSON ({reason})"),
            "push a good one with `hydra-cli cfg push`",
        ),
        other => CliError::from_hydra(what, other),
    }
}

/// Reads and checks the file: exit 2 naming the file (and the position of a
/// JSON error) before anything is stored.
fn read_document(file: &Path) -> CliResult<Value> {
    let shown = file.display();
    let text = std::fs::read_to_string(file).map_err(|e| {
        CliError::usage(
            format!("cannot read {shown}: {e}"),
            "check the file name; nothing was stored",
        )
    })?;
    let document: Value = serde_json::from_str(&text).map_err(|e| {
        CliError::usage(
            format!("{shown} is not valid JSON: {e}"),
            "fix the file; nothing was stored",
        )
    })?;
    if !document.is_object() {
        return Err(CliError::usage(
            format!("{shown} holds a JSON {}, not an object", kind_of(&document)),
            "a config is a JSON object, usually {\"hydra\": {...}, ...}; nothing was stored",
        ));
    }
    Ok(document)
}

fn kind_of(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// `cfg push <svc:ver> <file>`.
pub fn push(ctx: &Context, label: &str, file: &Path) -> CliResult<Report> {
    let (svc, version) = parse_label(label)?;
    let document = read_document(file)?;
    let hydra = ctx.hydra()?;
    hydra
        .put_config(label, &document)
        .map_err(|e| store_error(&format!("storing {label}"), e))?;
    let mut report = Report::new(json!({
        "label": label,
        "service": svc,
        "version": version,
        "stored": true,
    }))
    .text(format!("stored {} as {label}", file.display()));
    if document.get("hydra").is_none_or(|h| !h.is_object()) {
        report = report.text(format!(
            "note: it has no \"hydra\" object, so a service started with HYDRA_SERVICE={label} cannot use it"
        ));
    }
    Ok(report)
}

/// `cfg pull <svc:ver>`: the stored document itself, in both forms, so
/// `cfg pull x:1 > file` and `cfg push x:2 file` round-trip.
pub fn pull(ctx: &Context, label: &str) -> CliResult<Report> {
    let (svc, _) = parse_label(label)?;
    let hydra = ctx.hydra()?;
    let document = hydra
        .get_config(label)
        .map_err(|e| store_error(&format!("reading {label}"), e))?
        .ok_or_else(|| not_stored(label, svc))?;
    let text = serde_json::to_string_pretty(&document).expect("a JSON value serializes");
    Ok(Report::new(document).text(text))
}

/// One part of a version, compared as a number when it is one.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum VersionPart {
    Number(u64),
    Text(String),
}

/// `1.10.0` after `1.9.0`: numeric parts compare as numbers.
fn version_order(a: &str, b: &str) -> Ordering {
    let parts = |v: &str| -> Vec<VersionPart> {
        v.split(['.', '-', '+'])
            .map(|p| match p.parse() {
                Ok(n) => VersionPart::Number(n),
                Err(_) => VersionPart::Text(p.to_string()),
            })
            .collect()
    };
    parts(a).cmp(&parts(b)).then_with(|| a.cmp(b))
}

/// `cfg list <svc>`: the stored versions, oldest first (numeric parts
/// compared as numbers; Node sorted them as text).
pub fn list(ctx: &Context, service: &str) -> CliResult<Report> {
    let hydra = ctx.hydra()?;
    let svc = service.trim().to_lowercase();
    let labels = hydra
        .list_config(&svc)
        .map_err(|e| store_error(&format!("listing the configs of {svc}"), e))?;
    let prefix = format!("{svc}:");
    let mut versions: Vec<String> = labels
        .iter()
        .map(|l| l.strip_prefix(&prefix).unwrap_or(l).to_string())
        .collect();
    versions.sort_by(|a, b| version_order(a, b));
    let mut table = Table::new(["version", "label"]);
    for version in &versions {
        table.row([version.clone(), format!("{svc}:{version}")]);
    }
    let labels: Vec<String> = versions.iter().map(|v| format!("{svc}:{v}")).collect();
    let mut report = Report::new(json!({"service": svc, "versions": versions, "labels": labels})).table(table);
    if versions.is_empty() {
        report = report.text(format!(
            "no config is stored for {svc}; store one with `hydra-cli cfg push {svc}:<version> <file>`"
        ));
    }
    Ok(report)
}

/// `cfg remove <svc:ver>`.
pub fn remove(ctx: &Context, label: &str) -> CliResult<Report> {
    let (svc, _) = parse_label(label)?;
    let hydra = ctx.hydra()?;
    let removed = hydra
        .remove_config(label)
        .map_err(|e| store_error(&format!("removing {label}"), e))?;
    if !removed {
        return Err(not_stored(label, svc));
    }
    Ok(Report::new(json!({"label": label, "removed": true})).text(format!("removed {label}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_are_service_colon_version() {
        assert_eq!(parse_label("svc:1.0.0").unwrap(), ("svc", "1.0.0"));
        for bad in ["svc", "svc:", ":1", "a:b:c", ""] {
            assert!(parse_label(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn versions_sort_numerically() {
        let mut v = vec!["1.10.0", "1.9.0", "1.9.0-beta", "0.1", "2"];
        v.sort_by(|a, b| version_order(a, b));
        assert_eq!(v, ["0.1", "1.9.0", "1.9.0-beta", "1.10.0", "2"]);
    }
}
