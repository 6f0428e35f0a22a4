//! `baton test`: workflow cases with time skipped, through the real binary. The shipped cases
//! (`workflows/tests/*.test.toml`) pass; a case that does not match fails with what differs and
//! the history; `--with-plugins` lets the real plugins answer.

use baton_tests::{baton, root, run};

/// A directory with the order workflow and `cases` as its test file.
fn workflows_with(cases: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(root().join("workflows/order.toml"), dir.path().join("order.toml")).unwrap();
    std::fs::create_dir(dir.path().join("tests")).unwrap();
    std::fs::write(dir.path().join("tests/order.test.toml"), cases).unwrap();
    dir
}

#[test]
fn the_shipped_cases_pass_in_virtual_time() {
    let ran = run(baton().args(["test"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.contains("ok    order: a big order nobody approves is rejected after 48 hours"), "{ran}");
    // Two days of waiting, skipped.
    assert!(ran.stdout.contains("(2d of virtual time in"), "{ran}");
    let summary = ran.stdout.lines().last().unwrap();
    assert!(summary.ends_with("passed, 0 failed") && !summary.starts_with("0 "), "{ran}");

    let only = run(baton().args(["test", "order"]));
    assert_eq!(only.code, 0, "{only}");
    let none = run(baton().args(["test", "no_such_workflow"]));
    assert_eq!(none.code, 1, "{none}");
    assert!(none.stderr.contains("no test cases of no_such_workflow"), "{none}");
}

#[test]
fn a_case_that_does_not_match_says_what_differs_and_prints_the_history() {
    let dir = workflows_with(
        r#"
[[case]]
name = "expects the wrong end"
input = { order_id = "o-1", customer = "ada", items = [{ sku = "A-1", qty = 1, price = 5.0 }] }
[case.results]
"payment.charge" = { err = { code = "card_declined", message = "no" } }
"*" = { ok = {} }
[case.expect]
status = "completed"
compensations = ["reserve/reserve_one", "settle/ship"]

[[case]]
name = "forgets a command"
input = { order_id = "o-2", customer = "ada", items = [{ sku = "A-1", qty = 1, price = 5.0 }] }
[case.results]
"inventory.reserve" = { ok = {} }
"#,
    );
    let ran = run(baton().arg("--workflows").arg(dir.path()).arg("test"));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stdout.contains("FAIL  order: expects the wrong end"), "{ran}");
    assert!(ran.stdout.contains("status: expected completed, got compensated (card_declined at settle"), "{ran}");
    assert!(
        ran.stdout.contains(r#"compensations: expected ["reserve/reserve_one", "settle/ship"], got ["settle/ship", "reserve/reserve_one"]"#),
        "{ran}"
    );
    assert!(
        ran.stdout.contains("dispatched           step=settle/charge phase=forward attempt=1 command=payment.charge"),
        "{ran}"
    );
    assert!(
        ran.stdout
            .contains("the saga sent payment.charge (step settle/charge, attempt 1) and the case says nothing of it"),
        "{ran}"
    );
    assert!(ran.stdout.ends_with("0 passed, 2 failed\n"), "{ran}");

    let broken = workflows_with("[[case]]\nname = 1\n");
    let ran = run(baton().arg("--workflows").arg(broken.path()).arg("test"));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stderr.contains("order.test.toml") && ran.stderr.contains("name"), "{ran}");
}

#[test]
fn with_plugins_the_real_plugins_answer() {
    let dir = workflows_with(
        r#"
[[case]]
name = "a small order, by the real plugins"
input = { order_id = "o-1", customer = "ada", items = [{ sku = "A-1", qty = 1, price = 5.0 }] }
[case.expect]
status = "completed"

[[case]]
name = "the real payment plugin declines a total over 10000"
input = { order_id = "o-2", customer = "ada", items = [{ sku = "A-1", qty = 1, price = 20000.0 }] }
[case.expect]
status = "compensated"
error = "card_declined"
compensations = ["settle/ship", "reserve/reserve_one"]
"#,
    );
    let ran = run(baton().arg("--workflows").arg(dir.path()).args(["test", "--with-plugins"]));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.ends_with("2 passed, 0 failed\n"), "{ran}");
    // Without the plugins, the same cases name what they leave unanswered.
    let ran = run(baton().arg("--workflows").arg(dir.path()).arg("test"));
    assert_eq!(ran.code, 1, "{ran}");
    assert!(ran.stdout.contains("the case says nothing of it"), "{ran}");
}

/// The case the README shows (the first TOML block of "Testing workflows") passes as written.
#[test]
fn the_readme_example_case_passes() {
    let readme = std::fs::read_to_string(root().join("README.md")).unwrap();
    let section = &readme[readme.find("### Testing workflows").expect("the README's section")..];
    let start = section.find("```toml\n").expect("a TOML block") + "```toml\n".len();
    let case = &section[start..start + section[start..].find("```").unwrap()];
    let dir = workflows_with(case);
    let ran = run(baton().arg("--workflows").arg(dir.path()).arg("test"));
    assert_eq!(ran.code, 0, "{ran}");
    assert!(ran.stdout.ends_with("1 passed, 0 failed\n"), "{ran}");
}
