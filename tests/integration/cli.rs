//! Both binaries as a user runs them: help, configuration precedence and errors, unreachable
//! servers.

use std::process::Output;

use assert_cmd::Command;
use sluice_common::exit;
use sluice_tests::bin;

fn sluice(dir: &std::path::Path) -> Command {
    let mut command = Command::new(bin::sluice());
    command
        .current_dir(dir)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default());
    command
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn help_lists_the_commands_of_both_programs() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path()).arg("--help").output().unwrap();
    assert!(output.status.success());
    for command in ["new", "up", "down", "status", "check", "validate", "config"] {
        assert!(
            stdout(&output).contains(&format!("  {command} ")),
            "sluice --help lacks {command}"
        );
    }
    assert!(stdout(&output).contains("Exit codes"));

    let output = Command::new(bin::sluice_backfill())
        .arg("--help")
        .output()
        .unwrap();
    assert!(output.status.success());
    for command in ["run", "plan", "status", "pause", "resume", "cancel"] {
        assert!(
            stdout(&output).contains(&format!("  {command} ")),
            "sluice-backfill --help lacks {command}"
        );
    }
}

/// Whether `shell` is installed here.
fn installed(shell: &str) -> bool {
    std::process::Command::new(shell)
        .args(["-c", "true"])
        .output()
        .is_ok_and(|o| o.status.success())
}

#[test]
fn completions_load_in_the_shell_and_the_manual_lists_every_command() {
    let dir = tempfile::tempdir().unwrap();
    let programs = [
        (
            "sluice",
            bin::sluice(),
            vec!["up", "down", "status", "trace", "completions"],
        ),
        (
            "sluice-backfill",
            bin::sluice_backfill(),
            vec!["run", "plan", "pause", "man"],
        ),
    ];
    for (name, program, commands) in programs {
        // No configuration and no database: printed from the command line's definition.
        let generate = |args: &[&str]| {
            let output = Command::new(&program)
                .current_dir(dir.path())
                .env_clear()
                .args(args)
                .output()
                .unwrap();
            assert!(
                output.status.success(),
                "{name} {args:?}: {}",
                stderr(&output)
            );
            stdout(&output)
        };
        let script = dir.path().join(format!("{name}.bash"));
        std::fs::write(&script, generate(&["completions", "bash"])).unwrap();
        let loaded = std::process::Command::new("bash")
            .arg("-c")
            .arg(format!(
                "source '{}' && complete -p {name}",
                script.display()
            ))
            .output()
            .unwrap();
        assert!(loaded.status.success(), "bash: {}", stderr(&loaded));
        assert!(
            stdout(&loaded).contains(&format!("_{} {name}", name.replace('-', "__"))),
            "{}",
            stdout(&loaded)
        );
        if installed("zsh") {
            let script = dir.path().join(format!("_{name}"));
            std::fs::write(&script, generate(&["completions", "zsh"])).unwrap();
            let loaded = std::process::Command::new("zsh")
                .arg("-c")
                .arg(format!(
                    "autoload -U compinit && compinit -u && source '{}'",
                    script.display()
                ))
                .output()
                .unwrap();
            assert!(loaded.status.success(), "zsh: {}", stderr(&loaded));
        }
        for shell in ["fish", "powershell", "elvish"] {
            assert!(
                generate(&["completions", shell]).contains(name),
                "{name} completions {shell}"
            );
        }
        let man = generate(&["man"]);
        assert!(man.starts_with(".ie") || man.contains(".TH"), "{man}");
        assert!(man.contains(&format!(".TH {name} 1")), "{man}");
        for command in commands {
            assert!(
                man.contains(command),
                "the manual of {name} lacks {command}"
            );
        }
        assert!(
            man.contains("Exit codes"),
            "the manual of {name} lacks the exit codes"
        );
    }
}

#[test]
fn a_usage_error_exits_with_the_usage_code() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path()).arg("frobnicate").output().unwrap();
    assert_eq!(output.status.code(), Some(i32::from(exit::USAGE)));
}

#[test]
fn settings_follow_flag_then_env_then_file_then_default() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "schema = \"from_file\"\nconnect_timeout = \"7s\"\nlog_format = \"json\"\n",
    )
    .unwrap();

    let output = sluice(dir.path()).arg("config").output().unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    assert!(line_of(&text, "schema").contains("from_file"), "{text}");
    assert!(line_of(&text, "schema").contains("(config file)"), "{text}");
    assert!(
        line_of(&text, "connect_attempts").contains("(default)"),
        "{text}"
    );

    let output = sluice(dir.path())
        .env("SLUICE_SCHEMA", "from_env")
        .arg("config")
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(line_of(&text, "schema").contains("from_env"), "{text}");
    assert!(line_of(&text, "schema").contains("(environment)"), "{text}");
    assert!(line_of(&text, "connect_timeout").contains("7s"), "{text}");

    let output = sluice(dir.path())
        .env("SLUICE_SCHEMA", "from_env")
        .args(["config", "--schema", "from_flag"])
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(line_of(&text, "schema").contains("from_flag"), "{text}");
    assert!(
        line_of(&text, "schema").contains("(command line)"),
        "{text}"
    );
}

fn line_of<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find(|line| line.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no {name} line in:\n{text}"))
}

#[test]
fn config_never_shows_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path())
        .env("DATABASE_URL", "postgres://app:hunter2secret@db:5432/prod")
        .arg("config")
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(text.contains("postgres://app:***@db:5432/prod"), "{text}");
    assert!(!text.contains("hunter2secret"));
}

#[test]
fn an_unknown_key_in_the_config_file_names_the_key_and_the_file() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("sluice.toml"),
        "[runner]\nlock_timout = \"1s\"\n",
    )
    .unwrap();
    let output = sluice(dir.path()).arg("config").output().unwrap();
    assert_eq!(output.status.code(), Some(i32::from(exit::INVALID_INPUT)));
    let text = stderr(&output);
    assert!(text.contains("sluice.toml"), "{text}");
    assert!(text.contains("lock_timout"), "{text}");
}

#[test]
fn a_missing_explicit_config_file_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path())
        .args(["config", "--config", "nope.toml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(i32::from(exit::INVALID_INPUT)));
    assert!(stderr(&output).contains("nope.toml"));
}

#[test]
fn an_unreachable_server_fails_after_bounded_retries_naming_host_and_port() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("sluice.toml"), "connect_attempts = 2\n").unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let output = sluice(dir.path())
        .env(
            "DATABASE_URL",
            format!("postgres://app:hunter2secret@127.0.0.1:{port}/prod"),
        )
        .arg("status")
        .output()
        .unwrap();
    assert_eq!(
        output.status.code(),
        Some(i32::from(exit::DATABASE_UNAVAILABLE))
    );
    let text = stderr(&output);
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(text.contains("after 2 attempt(s)"), "{text}");
    assert!(!text.contains("hunter2secret"), "{text}");
}

#[test]
fn no_database_url_says_how_to_give_one() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("migrations")).unwrap();
    let output = sluice(dir.path()).arg("status").output().unwrap();
    assert_eq!(output.status.code(), Some(i32::from(exit::USAGE)));
    assert!(
        stderr(&output).contains("set DATABASE_URL"),
        "{}",
        stderr(&output)
    );
}

/// Runs `command` with stdout and stderr going into pipes nobody reads: every write fails.
fn with_closed_pipes(mut command: std::process::Command) -> std::process::ExitStatus {
    let mut child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    drop(child.stdout.take());
    drop(child.stderr.take());
    child.wait().unwrap()
}

#[tokio::test]
async fn a_closed_output_pipe_does_not_abort_a_migration_or_a_backfill() {
    // `sluice up | head -1`: printing must not panic half-way through the work.
    let project = sluice_tests::Project::new().await;
    project.write(
        "0001_items.sql",
        "CREATE TABLE items (id bigint PRIMARY KEY, n int);
         INSERT INTO items SELECT g, 0 FROM generate_series(1, 5000) g;",
    );
    let status = with_closed_pipes({
        let mut up = project.sluice();
        up.arg("up");
        up
    });
    assert_eq!(status.code(), Some(i32::from(exit::OK)));
    project.run(&["status"]).expect_code(exit::OK);

    project.job(
        "bump",
        "name = \"bump\"\ntable = \"items\"\nkey = [\"id\"]\nset = \"n = n + 1\"\nbatch_size = 100\n\
         min_batch_size = 100\nmax_batch_size = 100\n",
    );
    let status = with_closed_pipes({
        let mut run = project.backfill();
        run.args(["-v", "run", "bump"]);
        run
    });
    assert_eq!(status.code(), Some(i32::from(exit::OK)));
    let mut conn = project.db.connect().await;
    let wrong: i64 = sqlx::query_scalar("SELECT count(*) FROM items WHERE n <> 1")
        .fetch_one(&mut conn)
        .await
        .unwrap();
    assert_eq!(wrong, 0, "the backfill ran to its end");
}

#[test]
fn the_readme_exit_code_table_is_the_list_in_code() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    let mut table = String::from("| code | name | meaning |\n|---:|---|---|\n");
    for (code, name, meaning) in exit::ALL {
        table.push_str(&format!("| {code} | {name} | {meaning} |\n"));
    }
    assert!(
        readme.contains(&table),
        "README.md's exit-code table differs from sluice_common::exit::ALL; replace it with:\n{table}"
    );
    // And --help lists every code.
    let dir = tempfile::tempdir().unwrap();
    let help = sluice(dir.path()).arg("--help").output().unwrap();
    for (code, name, _) in exit::ALL {
        assert!(
            stdout(&help).contains(&format!("{code:>3}  {name}")),
            "--help lacks exit code {code}"
        );
    }
}

#[test]
fn config_shows_every_setting_with_its_origin() {
    let dir = tempfile::tempdir().unwrap();
    let output = sluice(dir.path())
        .env("SLUICE_PG_VERSION", "14")
        .args(["config", "--metrics-file", "m.prom"])
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(
        line_of(&text, "pg_version").contains("(environment)"),
        "{text}"
    );
    assert!(
        line_of(&text, "metrics_file").contains("(command line)"),
        "{text}"
    );
    assert!(line_of(&text, "backup").contains("(not set)"), "{text}");
    assert!(line_of(&text, "connect_wait").contains("1m"), "{text}");

    let output = Command::new(bin::sluice_backfill())
        .current_dir(dir.path())
        .env_clear()
        .env("SLUICE_WINDOW", "01:00-05:00")
        .env(
            "SLUICE_REPLICA_URLS",
            "postgres://r:Hidden,pw@h1/x,postgres://r:pw2@h2/x",
        )
        .args(["config", "--workers", "3", "--max-runtime", "45m"])
        .output()
        .unwrap();
    let text = stdout(&output);
    assert!(line_of(&text, "workers").contains("3"), "{text}");
    assert!(line_of(&text, "window").contains("01:00-05:00 "), "{text}");
    assert!(line_of(&text, "window").contains("(environment)"), "{text}");
    assert!(line_of(&text, "max_runtime").contains("45m"), "{text}");
    assert!(
        line_of(&text, "replica_urls").contains("postgres://r:***@h2/x"),
        "{text}"
    );
    assert!(!text.contains("Hidden"), "{text}");
    assert!(line_of(&text, "time_zone").contains("(not set)"), "{text}");
}
