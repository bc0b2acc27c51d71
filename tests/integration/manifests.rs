//! `jobs/k8s/`: the Kubernetes manifests pass a real Kubernetes schema validator
//! (kubernetes-validate, from PyPI, installed into target/ on first use), and carry the fields
//! that make sluice safe to run there.

use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace root")
        .to_path_buf()
}

fn manifest(name: &str) -> String {
    std::fs::read_to_string(root().join("jobs/k8s").join(name)).expect("read a manifest")
}

/// Installs kubernetes-validate under target/ once; returns its PYTHONPATH.
fn validator() -> PathBuf {
    let dir = root().join("target/kubernetes-validate");
    if !dir.join("kubernetes_validate").is_dir() {
        let status = Command::new("python3")
            .env("PIP_ROOT_USER_ACTION", "ignore")
            .args([
                "-m",
                "pip",
                "install",
                "--quiet",
                "--disable-pip-version-check",
                "--target",
            ])
            .arg(&dir)
            .arg("kubernetes-validate==1.37.0")
            .status()
            .expect("python3 runs");
        assert!(
            status.success(),
            "installing kubernetes-validate from PyPI failed; the manifests cannot be validated"
        );
    }
    dir
}

fn validate(files: &[PathBuf]) -> std::process::Output {
    Command::new("python3")
        .env("PYTHONPATH", validator())
        .args([
            "-m",
            "kubernetes_validate",
            "--strict",
            "--kubernetes-version",
            "1.33.0",
        ])
        .args(files)
        .output()
        .expect("run kubernetes-validate")
}

#[test]
fn the_manifests_pass_the_kubernetes_schema_strictly() {
    let dir = root().join("jobs/k8s");
    let files: Vec<PathBuf> = [
        "migrate-job.yaml",
        "backfill-job.yaml",
        "backfill-cronjob.yaml",
    ]
    .iter()
    .map(|f| dir.join(f))
    .collect();
    let output = validate(&files);
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    // The validator does reject what is wrong.
    let bad = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        manifest("migrate-job.yaml").replace(
            "restartPolicy: Never",
            "restartPolicy: Never\n      restartPolicyy: Never",
        ),
    )
    .unwrap();
    assert!(!validate(&[bad.path().to_path_buf()]).status.success());
}

/// `terminationGracePeriodSeconds: N` of a manifest.
fn grace_seconds(text: &str) -> u64 {
    text.lines()
        .find_map(|l| l.trim().strip_prefix("terminationGracePeriodSeconds:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("terminationGracePeriodSeconds is set")
}

#[test]
fn the_fields_that_matter_are_set() {
    let statement_timeout = sluice_backfill::job::defaults::STATEMENT_TIMEOUT.as_secs();
    for name in ["backfill-job.yaml", "backfill-cronjob.yaml"] {
        let text = manifest(name);
        assert!(
            grace_seconds(&text) > statement_timeout,
            "{name}: a pod must outlive its batch's statement_timeout on SIGTERM"
        );
        assert!(text.contains("runAsNonRoot: true"), "{name}");
        assert!(
            text.contains("secretKeyRef"),
            "{name}: the URL comes from a Secret"
        );
        assert!(
            text.contains("\"accounts_email_normalized\"")
                && root().join("jobs/accounts_email_normalized.toml").is_file(),
            "{name}: runs a job that exists"
        );
    }
    let job = manifest("backfill-job.yaml");
    assert!(job.contains("completionMode: Indexed") && job.contains("parallelism: 4"));
    let cron = manifest("backfill-cronjob.yaml");
    assert!(cron.contains("concurrencyPolicy: Forbid"));
    assert!(cron.contains("\"--window\"") && cron.contains("\"01:00-05:00\""));
    let migrate = manifest("migrate-job.yaml");
    assert!(migrate.contains("args: [\"--log-format\", \"json\", \"up\""));
    let docker = manifest("Dockerfile");
    assert_eq!(
        docker.matches("\nFROM ").count() + usize::from(docker.starts_with("FROM ")),
        2,
        "multi-stage"
    );
    assert!(docker.contains("\nUSER 10001"), "runs as non-root");
}
