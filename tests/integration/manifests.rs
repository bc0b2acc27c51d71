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
        "app-deployment.yaml",
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

#[test]
fn the_deployment_checks_the_schema_before_the_application_starts() {
    let text = manifest("app-deployment.yaml");
    let init = text
        .split("initContainers:")
        .nth(1)
        .and_then(|rest| rest.split("\n      containers:").next())
        .expect("an init container before the application's");
    assert!(
        init.contains("args: [\"--log-format\", \"json\", \"check\", \"--startup\"]"),
        "{init}"
    );
    assert!(init.contains("secretKeyRef"), "the URL comes from a Secret");
    assert!(text.contains("name: AUTO_MIGRATE\n              value: \"false\""));
    assert!(
        text.contains("maxUnavailable: 0"),
        "old pods serve until new ones pass"
    );
    assert!(text.contains("runAsNonRoot: true"));
    let docker = manifest("app.Dockerfile");
    assert!(docker.contains("-p sluice-example-app"));
    assert!(
        !docker.contains("COPY migrations"),
        "the migrations are compiled into the application"
    );
    assert!(docker.contains("\nUSER 10001"), "runs as non-root");
}

/// The exit codes a manifest's podFailurePolicy rule with `action` lists.
fn codes_for(text: &str, action: &str) -> Vec<u8> {
    let mut lines = text
        .lines()
        .skip_while(|l| !l.contains("podFailurePolicy:"));
    let mut codes = Vec::new();
    let mut in_rule = false;
    for line in lines.by_ref() {
        let line = line.trim();
        if let Some(rule) = line.strip_prefix("- action:") {
            in_rule = rule.trim() == action;
        } else if let (true, Some(values)) = (in_rule, line.strip_prefix("values:")) {
            codes.extend(
                values
                    .trim()
                    .trim_matches(|c| c == '[' || c == ']')
                    .split(',')
                    .filter_map(|v| v.trim().parse::<u8>().ok()),
            );
        }
    }
    codes
}

#[test]
fn the_jobs_act_on_sluices_exit_codes() {
    use sluice_common::exit;
    for name in [
        "migrate-job.yaml",
        "backfill-job.yaml",
        "backfill-cronjob.yaml",
    ] {
        let text = manifest(name);
        assert!(
            text.contains("restartPolicy: Never"),
            "{name}: podFailurePolicy needs Never"
        );
        assert_eq!(
            codes_for(&text, "FailJob"),
            [
                exit::USAGE,
                exit::INVALID_INPUT,
                exit::HISTORY_DRIFT,
                exit::BLOCKED
            ],
            "{name}: fail at once on what retrying cannot fix"
        );
        assert_eq!(codes_for(&text, "Ignore"), [exit::INTERRUPTED], "{name}");
        assert!(
            text.contains("type: DisruptionTarget"),
            "{name}: an eviction is no failure"
        );
        // Every listed code is one of sluice's.
        let known: Vec<u8> = exit::ALL.iter().map(|(code, ..)| *code).collect();
        for code in codes_for(&text, "FailJob")
            .iter()
            .chain(&codes_for(&text, "Ignore"))
        {
            assert!(
                known.contains(code),
                "{name}: {code} is not a sluice exit code"
            );
        }
    }
}
