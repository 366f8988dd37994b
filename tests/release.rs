//! What a release needs from the repository, checked on every run so that
//! publishing is a matter of running the publish commands: one version for
//! every package (the crates, the C library, the Python project) and the
//! changelog, and on every published crate the metadata crates.io shows and
//! the licence text.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The crates that go to crates.io, in publishing order (each depends on the ones before).
const PUBLISHED: [&str; 3] = ["hydra-redis", "hydra-router", "hydra-redis-cli"];

fn workspace_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn cargo_metadata() -> Value {
    let output = Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--no-deps", "--offline"])
        .current_dir(workspace_root())
        .output()
        .expect("cargo metadata runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("cargo metadata prints JSON")
}

fn package<'a>(metadata: &'a Value, name: &str) -> &'a Value {
    metadata["packages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("no package {name} in the workspace"))
}

/// `version = "…"` in pyproject.toml's `[project]` table.
fn python_project_version() -> String {
    let pyproject = std::fs::read_to_string(workspace_root().join("ffi/python/pyproject.toml")).unwrap();
    let mut in_project = false;
    for line in pyproject.lines() {
        let line = line.trim();
        if line.starts_with('[') {
            in_project = line == "[project]";
        } else if in_project && let Some(value) = line.strip_prefix("version = ") {
            return value.trim_matches('"').to_string();
        }
    }
    panic!("pyproject.toml has no [project] version");
}

#[test]
fn every_package_and_the_changelog_carry_one_version() {
    let metadata = cargo_metadata();
    let version = package(&metadata, "hydra-redis")["version"]
        .as_str()
        .unwrap()
        .to_string();
    for name in ["hydra-router", "hydra-redis-cli", "hydra-ffi"] {
        assert_eq!(
            package(&metadata, name)["version"],
            version.as_str(),
            "{name}'s version"
        );
    }
    // The C library's soname and hydra.pc come from hydra-ffi's version (ffi/Makefile).
    assert_eq!(python_project_version(), version, "ffi/python/pyproject.toml's version");
    // A path dependency between published crates must also name the version crates.io will have.
    for name in PUBLISHED {
        for dependency in package(&metadata, name)["dependencies"].as_array().unwrap() {
            if dependency["path"].is_string() && dependency["kind"].is_null() {
                let wanted = dependency["req"].as_str().unwrap();
                assert_eq!(wanted, format!("^{version}"), "{name} → {}", dependency["name"]);
            }
        }
    }
    let changelog = std::fs::read_to_string(workspace_root().join("CHANGELOG.md")).unwrap();
    assert!(
        changelog.contains("## [Unreleased]"),
        "CHANGELOG.md keeps an Unreleased section"
    );
    assert!(
        changelog.contains(&format!("\n## [{version}]")),
        "CHANGELOG.md has no section for {version}"
    );
}

#[test]
fn every_published_crate_has_its_metadata_and_licence_text() {
    let metadata = cargo_metadata();
    for name in PUBLISHED {
        let crate_ = package(&metadata, name);
        for field in ["description", "license", "repository", "readme", "rust_version"] {
            assert!(
                crate_[field].as_str().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        assert!(
            !crate_["keywords"].as_array().unwrap().is_empty(),
            "{name} has no keywords"
        );
        assert!(
            !crate_["categories"].as_array().unwrap().is_empty(),
            "{name} has no categories"
        );
        assert_ne!(
            crate_["publish"],
            serde_json::json!([]),
            "{name} is marked publish = false"
        );
        let directory = Path::new(crate_["manifest_path"].as_str().unwrap()).parent().unwrap();
        let licence = std::fs::read_to_string(directory.join("LICENSE"))
            .unwrap_or_else(|e| panic!("{name} has no LICENSE beside its manifest: {e}"));
        assert!(
            licence.starts_with("MIT License"),
            "{name}'s LICENSE is not the MIT text"
        );
        assert_eq!(crate_["license"], "MIT", "{name}'s licence field matches the text");
    }
    let python_licence = std::fs::read_to_string(workspace_root().join("ffi/python/LICENSE")).unwrap();
    assert!(
        python_licence.starts_with("MIT License"),
        "the Python project carries the licence text"
    );
}
