use std::process::{Command, Output};

fn authgate(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_authgate"));
    command.args(args);
    for (key, _) in std::env::vars().filter(|(key, _)| key.starts_with("AUTHGATE_")) {
        command.env_remove(key);
    }
    command.envs(env.iter().copied());
    command.output().unwrap()
}

fn one_line_of_stderr(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr:?}");
    stderr
}

#[test]
fn openapi_prints_the_committed_spec() {
    let output = authgate(&["openapi"], &[]);
    assert!(output.status.success());
    let committed =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.yaml")).unwrap();
    assert!(String::from_utf8(output.stdout).unwrap() == committed);
}

#[test]
fn an_unparsable_value_exits_non_zero_naming_the_variable() {
    for (variable, value) in [
        ("AUTHGATE_ACCESS_TTL", "soon"),
        ("AUTHGATE_LISTEN", "not-an-address"),
        ("AUTHGATE_TRUST_FORWARDED_FOR", "maybe"),
        ("AUTHGATE_REFRESH_REUSE_GRACE", "-1"),
        ("AUTHGATE_OTLP_ENDPOINT", "not a url"),
        ("AUTHGATE_OTLP_ENDPOINT", "ftp://collector:4318"),
        ("AUTHGATE_OTLP_ENDPOINT", "http://collector:4318?tenant=a"),
        ("AUTHGATE_SERVER_TIMING", "sometimes"),
    ] {
        let output = authgate(&["serve"], &[(variable, value)]);
        assert!(!output.status.success(), "{variable}={value}");
        let stderr = one_line_of_stderr(&output);
        assert!(stderr.contains(variable), "{variable}: {stderr}");
    }
}

#[test]
fn an_unreachable_database_exits_non_zero_with_one_line() {
    let output = authgate(
        &["migrate"],
        &[(
            "AUTHGATE_DATABASE_URL",
            "postgres://postgres:secret@127.0.0.1:1/authgate",
        )],
    );
    assert!(!output.status.success());
    let stderr = one_line_of_stderr(&output);
    assert!(stderr.contains("AUTHGATE_DATABASE_URL"), "{stderr}");
    assert!(!stderr.contains("secret"), "the password leaked: {stderr}");
}

#[test]
fn bad_arguments_exit_non_zero() {
    let output = authgate(&["no-such-command"], &[]);
    assert!(!output.status.success());
    one_line_of_stderr(&output);
}

#[test]
fn migrate_applies_the_schema_and_exits_zero() {
    let path = std::env::temp_dir().join(format!("authgate-migrate-{}.db", uuid::Uuid::new_v4()));
    let url = format!("sqlite://{}?mode=rwc", path.display());
    let output = authgate(
        &["migrate"],
        &[("AUTHGATE_DATABASE_URL", &url), ("AUTHGATE_LOG", "error")],
    );
    assert!(output.status.success(), "{output:?}");
    // Applying again is a no-op.
    let output = authgate(
        &["migrate"],
        &[("AUTHGATE_DATABASE_URL", &url), ("AUTHGATE_LOG", "error")],
    );
    assert!(output.status.success(), "{output:?}");
    assert!(path.exists());
}

#[test]
fn config_check_prints_the_effective_configuration_without_secrets() {
    let path = std::env::temp_dir().join(format!("authgate-{}.toml", uuid::Uuid::new_v4()));
    std::fs::write(
        &path,
        "database_url = \"postgres://app:hunter2@db.internal/auth\"\naccess_ttl = 300\naudience = \"from-file\"\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_authgate"))
        .args(["config", "check", "--config", path.to_str().unwrap()])
        .env_remove("AUTHGATE_DATABASE_URL")
        .env_remove("AUTHGATE_ACCESS_TTL")
        .env("AUTHGATE_AUDIENCE", "from-env")
        .output()
        .unwrap();
    assert!(output.status.success(), "{output:?}");
    let printed = String::from_utf8(output.stdout).unwrap();
    // Every setting, as the TOML file would hold it.
    let table: toml::Table = toml::from_str(&printed).unwrap();
    assert_eq!(table["access_ttl"].as_integer(), Some(300));
    for setting in [
        "rate_limit_per_ip",
        "login_max_failures",
        "trust_forwarded_for",
        "max_connections",
    ] {
        assert!(table.contains_key(setting), "{setting} missing: {printed}");
    }
    assert!(
        printed.contains("\"from-env\""),
        "the environment wins: {printed}"
    );
    assert!(
        printed.contains("postgres://app:***@db.internal/auth"),
        "{printed}"
    );
    assert!(!printed.contains("hunter2"));
}
