//! `baton check` and definition errors, through the real binary.

use baton_tests::{baton, run};

#[test]
fn check_passes_on_the_examples() {
    let ran = run(baton().arg("check"));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.starts_with("ok: 7 workflow(s)"), "{ran}");
}

#[test]
fn check_names_file_step_and_fix_for_every_problem() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(baton_tests::root().join("workflows/order.toml"), dir.path().join("order.toml")).unwrap();
    std::fs::write(
        dir.path().join("broken.toml"),
        r#"name = "broken"

[[step]]
name = "charge"
command = "payment.charg"
compensate = "payment.refund"

[[step]]
name = "ship"
command = "shipping.teleport"
timeout = "soon"
"#,
    )
    .unwrap();
    std::fs::write(
        dir.path().join("typo.toml"),
        "name = \"typo\"\n[[step]]\nname = \"a\"\ncommand = \"testkit.echo\"\ncompensation = \"x\"\n",
    )
    .unwrap();

    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).arg("check"));
    assert_eq!(ran.code, 1, "{ran}");
    let err = &ran.stderr;
    assert!(err.contains("broken.toml:5: step \"charge\": no plugin handles command \"payment.charg\""), "{ran}");
    assert!(err.contains("did you mean \"payment.charge\"?"), "{ran}");
    assert!(err.contains("broken.toml:11: step \"ship\": timeout: \"soon\" is not a duration"), "{ran}");
    assert!(err.contains("typo.toml:5: unknown key \"compensation\" in a step: did you mean \"compensate\"?"), "{ran}");
    assert!(!err.contains("order.toml"), "order.toml is fine: {ran}");
}

#[test]
fn run_refuses_a_workflow_with_an_unknown_command() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("w.toml"), "name = \"w\"\n[[step]]\nname = \"a\"\ncommand = \"warp.drive\"\n")
        .unwrap();
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args(["run", "w", "--input", "{}"]));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("w.toml:4: step \"a\": no plugin handles command \"warp.drive\""), "{ran}");
    assert!(ran.stdout.is_empty(), "{ran}");
}

/// Hostile values never crash the loader: each is a definition error that names the file,
/// the line and the largest value allowed, and `check`, `run` and `serve` all exit cleanly.
#[test]
fn hostile_values_are_definition_errors_not_crashes() {
    let dir = tempfile::tempdir().unwrap();
    let deep = "[".repeat(10_000);
    std::fs::write(
        dir.path().join("hostile.toml"),
        format!(
            r#"name = "hostile"

[[step]]
name = "a"
command = "testkit.echo"
timeout = "99999999999999999999h"

[[step]]
name = "b"
command = "testkit.echo"
timeout = "5124095576000h"

[[step]]
name = "c"
command = "testkit.echo"
retry = {{ attempts = 4294967295, backoff = "99999999999999999999h" }}

[[step]]
name = "d"
command = "testkit.echo"
timeout = "400d"
input = "{deep}"
"#
        ),
    )
    .unwrap();
    let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).arg("check"));
    assert_eq!(ran.code, 1, "{ran}");
    let err = &ran.stderr;
    assert!(err.contains("hostile.toml:6: step \"a\": timeout: \"99999999999999999999h\" is not a duration"), "{ran}");
    assert!(err.contains("hostile.toml:11: step \"b\": timeout: \"5124095576000h\""), "{ran}");
    assert!(err.contains("retry.attempts 4294967295 is more than the largest value allowed, 100"), "{ran}");
    assert!(err.contains("step \"c\": retry.backoff: \"99999999999999999999h\""), "{ran}");
    assert!(err.contains("step \"d\": timeout: \"400d\" is longer than the largest value allowed here, 365d"), "{ran}");
    assert!(err.contains("step \"d\": input is not a valid expression"), "{ran}");
    for args in
        [&["run", "hostile", "--input", "{}"][..], &["serve", "--listen", "127.0.0.1:0", "--data", "/dev/null/x"]]
    {
        let ran = run(baton().env("BATON_WORKFLOWS", dir.path()).args(args));
        assert_ne!(ran.code, 101, "{args:?} panicked: {ran}");
        assert!(!ran.stderr.contains("panicked"), "{args:?}: {ran}");
    }
}
